"""The tracker, driven by a script of what a backend would report (no root needed):
the spec read early, its provenance, and the init's argv (as a backend captured
it at the exec) checked against it."""

from __future__ import annotations

import json
import subprocess

import pytest

from runctrace.runc import tracker as resolve
from runctrace.events import EventType
from runctrace.backends.base import Stats


@pytest.fixture
def tracker():
    emitted, watched = [], []
    t = resolve.Tracker("script", emitted.append, Stats(), lambda c, start, call: watched.append(c.pid),
                        sees_inits=True)
    t.emitted = emitted
    yield t
    t.close()


@pytest.fixture
def processes():
    """Real processes standing in for runc and its container's init."""
    started = []

    def start(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _bundle(tmp_path, args):
    (tmp_path / "config.json").write_text(json.dumps({"process": {"args": args, "cwd": "/"}, "root": {"path": "r"}}))
    return str(tmp_path)


@pytest.mark.parametrize("init_argv,flagged", [
    (["sleep", "30"], False),
    (["sleep", "31"], True),  # not what the spec said runc would run
])
def test_the_init_argv_is_checked_against_the_spec(tracker, processes, tmp_path, init_argv, flagged):
    runc = processes("sleep", "60")
    init = processes(*init_argv)
    bundle = _bundle(tmp_path, ["sleep", "30"])
    argv = ["runc", "--root", str(tmp_path / "state"), "run", "--bundle", bundle, "c1"]
    assert tracker.runc_started(runc.pid, argv, "/", "runc") is not None
    tracker.init_started(runc.pid, init.pid, argv=init_argv)  # as the kernel saw the exec
    (add,) = tracker.emitted
    assert add.type is EventType.ADD and add.container_pid == init.pid
    assert ("args-differ" in add.flags) == flagged


def test_an_argv_the_backend_did_not_capture_is_not_compared(tracker, processes, tmp_path):
    runc, init = processes("sleep", "60"), processes("sleep", "31")
    bundle = _bundle(tmp_path, ["sleep", "30"])
    tracker.runc_started(runc.pid, ["runc", "run", "--bundle", bundle, "c1"], "/", "runc")
    tracker.init_started(runc.pid, init.pid)  # (fanotify: /proc would show a later exec's)
    (add,) = tracker.emitted
    assert add.flags == []


def test_the_spec_is_the_one_read_when_runc_started(tracker, processes, tmp_path):
    runc, init = processes("sleep", "60"), processes("sleep", "30")
    bundle = _bundle(tmp_path, ["sleep", "30"])
    tracker.runc_started(runc.pid, ["runc", "run", "--bundle", bundle, "c1"], "/", "runc")
    _bundle(tmp_path, ["evil"])  # rewritten once runc had its arguments
    tracker.init_started(runc.pid, init.pid)
    (add,) = tracker.emitted
    assert add.container_config["process"]["args"] == ["sleep", "30"]
    assert "config-changed" in add.flags and add.config_sha256 and add.runc_uid is not None


def test_a_create_is_checked_at_its_init_s_first_exec_only(tracker, processes, tmp_path):
    runc, init = processes("sleep", "60"), processes("sleep", "31")
    bundle = _bundle(tmp_path, ["sleep", "30"])
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(init.pid))
    tracker.runc_started(runc.pid, ["runc", "create", "--bundle", bundle, "--pid-file", str(pid_file), "c1"],
                         "/", "runc")
    runc.kill(), runc.wait()
    tracker.runc_exited(runc.pid, 0)
    (add,) = tracker.emitted
    assert add.flags == []  # its program has not started yet
    tracker.init_exec(init.pid, ["sleep", "31"])  # `runc start`: the program's exec
    tracker.init_exec(init.pid, ["sleep", "30"])  # (its later execs are its own business)
    init.kill(), init.wait()
    tracker.pid_exited(init.pid, 9)
    remove = tracker.emitted[-1]
    assert remove.type is EventType.REMOVE and remove.flags == ["args-differ"]
    assert remove.container_config == {"hostname": None, "process": {"args": ["sleep", "30"], "cwd": "/"},
                                       "root": {"path": "r"}}  # what a running container keeps of its spec
