"""``runctrace doctor``, backend support reasons, and auto's fallback when BCC is missing.

Unavailability is made real where that is possible without touching the machine:
a bpf() syscall number that does not exist, a tracefs path that is not there, a
kernel release with no headers, a runc search list with nothing in it. Only
"BCC's module cannot be imported" is faked, by blocking the import.
"""

from __future__ import annotations

import os
import platform
import sys

import pytest
from typer.testing import CliRunner

from conftest import ROOT_ONLY
from runctrace import _sys, backends
from runctrace.backends import bcc
from runctrace.backends.bcc import program
from runctrace.errors import NotSupported
from runctrace.runc import binaries as runtimes
from runctrace.cli import app
from runctrace.cli.doctor import diagnose
from runctrace.backends.fanotify import FanotifyNotifier
from runctrace.backends.base import Support

pytestmark = ROOT_ONLY


def doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", *args])


def test_diagnose_this_machine():
    diag = diagnose()
    assert diag.kernel == platform.release()
    assert [b.name for b in diag.backends] == ["bcc", "fanotify"]
    assert all(b.ok for b in diag.backends), diag.backends
    assert diag.auto == "bcc"
    assert "/usr/sbin/runc" in {p for b in diag.runc for p in (b.path, *b.aliases)}


def test_doctor_reports_every_backend_and_exits_zero():
    result = doctor()
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"kernel: {platform.release()}" in out
    assert "backend bcc: can run" in out and "backend fanotify: can run" in out
    assert "/usr/sbin/runc" in out
    assert "auto: bcc" in out


def test_doctor_exits_nonzero_only_when_nothing_can_run(monkeypatch):
    def only_fanotify(name, runc_paths=()):
        return Support(name == "fanotify", "fanotify is fine" if name == "fanotify" else "bcc is broken here")

    monkeypatch.setattr(backends, "backend_support", only_fanotify)
    result = doctor()
    assert result.exit_code == 0, result.output
    assert "backend bcc: cannot run: bcc is broken here" in result.output
    assert "auto: fanotify" in result.output

    monkeypatch.setattr(backends, "backend_support", lambda name, runc_paths=(): Support(False, f"no {name} today"))
    result = doctor()
    assert result.exit_code == 1
    assert "no bcc today" in result.output and "no fanotify today" in result.output
    assert "no backend can run here" in result.output


def test_doctor_without_any_runc(monkeypatch):
    monkeypatch.setattr(runtimes, "DEFAULT_PATHS", ("/nonexistent/runc",))
    monkeypatch.delenv(runtimes.ENV_VAR, raising=False)
    result = doctor()
    assert result.exit_code == 1
    assert "runc: none found: no runc binary found; tried /nonexistent/runc" in result.output
    assert "--runc-path" in result.output  # how to fix it
    # and --runc-path is how: the doctor takes it too
    result = doctor("--runc-path", "/usr/sbin/runc")
    assert result.exit_code == 0, result.output


def test_doctor_prints_the_bpf_program():
    result = doctor("--print-bpf")
    assert result.exit_code == 0
    assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in result.output
    assert "struct rt_exec_event" in result.output  # the header is inlined


# ---------------------------------------------------------------- bcc's reasons


def test_bcc_reason_no_bpf_syscall(monkeypatch):
    monkeypatch.setitem(_sys._SYS_BPF, platform.machine(), 100000)  # no such syscall: ENOSYS
    support = bcc.BccNotifier.supported()
    assert not support and "no bpf() syscall" in support.reason


def test_bcc_reason_module_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "bcc", None)  # `import bcc` now raises ImportError
    support = bcc.BccNotifier.supported()
    assert not support and "BCC's Python module cannot be imported" in support.reason
    assert "python3-bpfcc" in support.reason


def test_bcc_reason_no_kernel_headers(monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    monkeypatch.setattr(program.platform, "release", lambda: "0.0.0-no-such-kernel")
    support = bcc.BccNotifier.supported()
    assert not support and "no kernel headers" in support.reason
    assert "/lib/modules/0.0.0-no-such-kernel/build" in support.reason


def test_bcc_reason_no_tracefs(monkeypatch):
    monkeypatch.setattr(program, "_TRACEFS", ("/nonexistent/tracing",))
    support = bcc.BccNotifier.supported()
    assert not support and "tracefs is not mounted" in support.reason


def test_bcc_reason_no_runc(monkeypatch):
    monkeypatch.setattr(runtimes, "DEFAULT_PATHS", ("/nonexistent/runc",))
    monkeypatch.delenv(runtimes.ENV_VAR, raising=False)
    support = bcc.BccNotifier.supported()
    assert not support and "no runc binary found" in support.reason


def test_bcc_reason_not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    support = bcc.BccNotifier.supported()
    assert not support and "needs root" in support.reason


def test_constructor_refuses_with_the_same_reason(monkeypatch):
    monkeypatch.setattr(program, "_TRACEFS", ("/nonexistent/tracing",))
    with pytest.raises(NotSupported, match="tracefs is not mounted"):
        bcc.BccNotifier()


# ------------------------------------------------------------------- fallback


def test_auto_falls_back_to_fanotify_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "bcc", None)
    notifier, why = backends.open_notifier("auto")
    try:
        assert isinstance(notifier, FanotifyNotifier)
        assert why.startswith("backend: fanotify (bcc unavailable: ")
        assert "BCC's Python module cannot be imported" in why
    finally:
        notifier.close()


def test_auto_prefers_bcc_when_it_can_run():
    notifier, why = backends.open_notifier("auto")
    try:
        assert isinstance(notifier, bcc.BccNotifier)
        assert why.startswith("backend: bcc")
    finally:
        notifier.close()
