"""The eBPF (BCC) backend against real runc containers and the real kernel.

What only this backend does: the kernel's filter, its records and maps, the
init's argv at its exec, exits sent at the zombie. The invocation styles every
backend must handle (foreground and detached runs, containerd's shim, failed
creates, watching a PID, close) run on both backends in test_containers.py.

Most tests share one notifier (compiling the BPF program takes most of a second)
and tell their containers apart by unique IDs; the harness (bundles, runc, event
waiting) is conftest.py's. Each asserts exactly one ADD and one REMOVE. The pure
parts (record decoding, argv parsing after runc's chdir) are tested at the end
without a kernel.
"""

from __future__ import annotations

import ctypes as ct
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT_ONLY, EventLog, fd_count as fds, runc, runc_pid
from runctrace.backends.bcc import BccNotifier, inodes
from runctrace.backends.bcc.inodes import RuncFiles, file_id, kernel_dev
from runctrace.backends.bcc.records import C, HEADER, RtEvent, RtExecEvent, bpf_source, decode_record
from runctrace.events import EventType
from runctrace.backends.fanotify import FanotifyNotifier
from runctrace.backends.base import Stats
from runctrace.runc.tracker import Container, parse_call
from runctrace.runc.proc import process_alive
from runctrace.runc.binaries import RuncBinary
from runctrace.runc.files import rfc3339_to_ns


@pytest.fixture(scope="module")
def notifier():
    support = BccNotifier.supported()
    assert support, f"the bcc backend should run on this machine: {support.reason}"
    n = BccNotifier()
    yield n
    n.close()


@pytest.fixture
def seen(notifier):
    log = EventLog(notifier)
    log.caught_up()
    log.events.clear()  # earlier tests' leftovers stay out of this one's list
    return log


# ------------------------------------------------------------ invocation styles


class TestInvocationStyles:
    pytestmark = ROOT_ONLY

    def test_run_foreground_instant_exit_code(self, seen, bundles, container_ids, tmp_path, notifier):
        """sh -c 'exit 7' ends in a millisecond; runc run then exits 7 too.

        Not a failed create: the kernel saw the container's init start."""
        bundle = bundles.make(["sh", "-c", "exit 7"])
        for i in range(3):
            cid = container_ids(f"bcct-instant{i}")
            assert runc("run", "--bundle", str(bundle), cid, check=False).returncode == 7
            add, remove = seen.lifecycle(cid)  # an ADD: not counted as a failed create
            assert add.bundle == str(bundle) and add.error is None
            assert (remove.exit_code, remove.signal) == (7, None)

    @pytest.mark.parametrize("shape", ["many", "long"])
    def test_argv_the_kernel_cannot_copy_whole_is_read_from_proc(self, seen, bundles, container_ids, tmp_path,
                                                                 notifier, shape):
        """More arguments than the kernel copies (RT_MAX_ARGS), or one longer than
        RT_ARG_MAX: the record comes marked truncated, and the rest is read from
        /proc/PID/cmdline while runc still runs (its container sleeps)."""
        bundle = bundles.make(["sleep", "0.3"])
        cid = container_ids(f"bcct-argv{shape}")
        if shape == "many":
            flags = ["--log-format", "text"] * (C["RT_MAX_ARGS"] // 2 + 5)
        else:
            deep = tmp_path.joinpath(*["d" * 200] * (C["RT_ARG_MAX"] // 200 + 1))
            deep.mkdir(parents=True)
            flags = ["--log", str(deep / "runc.log")]
        argv = ["runc", *flags, "run", "--bundle", str(bundle), cid]
        assert subprocess.run(argv, capture_output=True).returncode == 0
        add, remove = seen.lifecycle(cid)
        assert add.runtime_args == argv
        assert add.bundle == str(bundle) and add.error is None
        # what the kernel sent: the first arguments only, marked so
        (record,) = [r for r in notifier.recent_records
                     if r.type == C["RT_EV_EXEC"] and r.argv == tuple(argv[:len(r.argv)]) and len(r.argv) > 1]
        assert record.flags & C["RT_F_ARGS_TRUNCATED"] and len(record.argv) < len(argv)

    def test_namespaces_of_an_init_that_ends_at_once(self, seen, bundles, container_ids, tmp_path):
        """`true` ends within a millisecond of its exec, often before user space
        could read /proc/PID/ns: the kernel reads them as the init execs."""
        bundle = bundles.make(["true"])
        host = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in ("mnt", "pid", "net")}
        for i in range(20):
            cid = container_ids(f"bcct-nsnow{i}")
            runc("run", "--bundle", str(bundle), cid)
            add, _ = seen.lifecycle(cid)
            assert add.mntns and add.pidns and add.netns, add
            assert add.mntns != host["mnt"] and add.pidns != host["pid"] and add.netns != host["net"]

    def test_a_create_is_added_before_runc_start(self, seen, bundles, container_ids):
        """The ADD of a create without --pid-file comes from runc's state.json
        while the init waits for `runc start`, not from the init's exec."""
        bundle = bundles.make(["sh", "-c", "exit 7"])
        cid = container_ids("bcct-create")
        runc("create", cid, cwd=bundle)
        pid = runc_pid(cid)
        seen.wait(lambda evs: any(e.container_id == cid for e in evs), timeout=5)
        assert [e.type for e in seen.of(cid)] == [EventType.ADD]
        runc("start", cid)
        add, remove = seen.lifecycle(cid)
        runc("delete", cid)
        assert add.container_pid == pid and remove.exit_code == 7

    def test_runc_delete_succeeds_as_soon_as_remove_arrives(self, seen, bundles, container_ids, tmp_path):
        """REMOVE means stopped as runc sees it: `runc delete` (not forced) works at once.

        The exit tracepoint fires before the init is a zombie; the backend must
        not pass that on early (the kernel sends it from the parent's SIGCHLD)."""
        bundle = bundles.make(["true"])
        for i in range(5):
            cid = container_ids(f"bcct-delete{i}")
            runc("create", "--bundle", str(bundle), cid)
            runc("start", cid)
            seen.wait_removed(cid)
            runc("delete", cid)

    def test_a_creates_init_is_compared_with_its_spec_at_runc_start(self, seen, bundles, container_ids, tmp_path,
                                                                     notifier, monkeypatch):
        """The create's init execs its program at `runc start`, after its runc
        ended: the kernel reports that exec (RT_EV_ORPHAN_INIT_EXEC), once, and
        the argv compared with the spec is the program's, which matches. The
        program execs another (sleep) later: no second record, no second look."""
        args = ["sh", "-c", "sleep 0.1; exec sleep 0.2"]
        bundle = bundles.make(args)
        compared = []
        real_check = Container.check_args

        def check_args(container, argv):
            compared.append((container.pid, argv))
            return real_check(container, argv)

        monkeypatch.setattr(Container, "check_args", check_args)
        cid = container_ids("bcct-startargs")
        runc("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "init.pid"), cid)
        pid = int((tmp_path / "init.pid").read_text())
        runc("start", cid)
        deadline = time.monotonic() + 5
        while _cmdline(pid) != [b"sleep", b"0.2"]:  # the program's own exec, the init's second
            assert time.monotonic() < deadline, f"the init never exec'd sleep: {_cmdline(pid)}"
            time.sleep(0.005)
        add, remove = seen.lifecycle(cid)
        runc("delete", cid)
        assert add.container_pid == remove.container_pid == pid
        assert "args-differ" not in remove.flags and remove.exit_code == 0
        orphan = [r for r in notifier.recent_records if r.type == C["RT_EV_ORPHAN_INIT_EXEC"] and r.pid == pid]
        assert len(orphan) == 1 and orphan[0].argv == tuple(args)
        # at the create (nothing to compare yet: the program has not started), then at its start
        assert [argv for p, argv in compared if p == pid] == [None, args]

    def test_a_record_whose_handling_fails_is_counted_and_the_loop_goes_on(self, seen, bundles, container_ids, tmp_path,
                                                                           notifier, monkeypatch):
        """bcc's own handling of a record raises (here: runc's exec record of the
        first container): the error is counted, and the next container is
        recorded as ever."""
        bundle = bundles.make(["true"])
        first, second = container_ids("bcct-failing"), container_ids("bcct-after")
        failed = []
        real_on_exec = notifier._on_exec

        def on_exec(rec):
            if first in rec.argv:
                failed.append(rec.pid)
                raise RuntimeError("injected: handling this record fails")
            real_on_exec(rec)

        monkeypatch.setattr(notifier, "_on_exec", on_exec)
        errors = notifier.stats.errors
        runc("run", "--bundle", str(bundle), first)
        runc("run", "--bundle", str(bundle), second)
        add, remove = seen.lifecycle(second)
        assert add.bundle == str(bundle) and remove.exit_code == 0
        assert len(failed) == 1 and notifier.stats.errors == errors + 1
        assert notifier.failure is None

    def test_equals_forms_relative_paths_and_new_root(self, seen, bundles, container_ids, tmp_path):
        """--flag=value everywhere, a relative --bundle and --pid-file, and a --root
        two levels below anything that exists. runc chdirs into the bundle early:
        the backend must still get the bundle and the PID right."""
        bundle = bundles.make(["sleep", "0.2"])
        root = str(tmp_path / "new" / "root")
        cid = container_ids("bcct-equals", root=root)
        b = bundle.name
        runc(f"--root={root}", "--log-format=json", "--debug=false",
             "create", f"--bundle={b}", f"--pid-file={b}/init.pid", "--no-pivot=false", cid, cwd=bundle.parent)
        pid = int((bundle / "init.pid").read_text())
        runc(f"--root={root}", "start", cid)
        add, _ = seen.lifecycle(cid)
        runc(f"--root={root}", "delete", cid)
        assert add.container_pid == pid
        assert add.bundle == str(bundle) and add.runtime_root == root
        assert add.container_config["process"]["args"] == ["sleep", "0.2"]

    @pytest.mark.parametrize("style", ["hardlink", "symlink", "fd"])
    def test_runc_under_another_name_is_the_same_inode(self, seen, bundles, container_ids, tmp_path, notifier, style):
        """runc through a hard link or a symlink of another name, or through an open
        fd (/proc/self/fd/N): no watched path and no name ending in runc, but the
        kernel matches the executed file's inode. (Where runc's filesystem is on a
        block device, its device number differs between stat(2)'s encoding and the
        kernel's s_dev, 254:0 being 0xfe00 and 0xfe00000: then this also proves
        the conversion.)"""
        runc_bin = os.path.realpath(shutil.which("runc"))
        bundle = bundles.make(["true"])
        cid = container_ids(f"bcct-{style}")
        if style == "fd":
            # the shell opens runc on fd 3, then becomes it through the fd
            used = "/proc/self/fd/3"
            argv = ["sh", "-c", f'exec 3<"$0"; exec {used} run --bundle "$1" "$2"', runc_bin, str(bundle), cid]
        else:
            used = str(_same_fs_dir(runc_bin, tmp_path) / f"notrunc-{cid}")
            if style == "hardlink":
                os.link(runc_bin, used)
            else:
                os.symlink(runc_bin, used)
            argv = [used, "run", "--bundle", str(bundle), cid]
        try:
            subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        finally:
            if style != "fd":
                os.unlink(used)
        add, remove = seen.lifecycle(cid)
        assert add.runtime_args == [used, "run", "--bundle", str(bundle), cid]
        assert add.runtime in notifier.runc_files.paths and add.error is None
        assert remove.exit_code == 0
        (record,) = [r for r in notifier.recent_records if r.type == C["RT_EV_EXEC"] and cid in r.argv]
        assert record.filename == used and not record.flags & C["RT_F_UNVERIFIED"]


# ------------------------------------------------- the init's argv at its exec

# An entrypoint that replaces itself at once: read from /proc when its record
# arrives, the argv is often `sleep 0.2`'s already, not the spec's.
_EXECS_AT_ONCE = ["sh", "-c", "exec sleep 0.2"]

# Runs argv[1:] stopped at its exec, as a debugger holds a program it starts:
# PTRACE_TRACEME makes the exec stop the process with SIGTRAP, its parent (the
# test) the tracer that lets it go.
_STOPPED_AT_EXEC = (
    "import ctypes, os, sys\n"
    "if ctypes.CDLL(None, use_errno=True).ptrace(0, 0, None, None):\n"
    "    sys.exit('PTRACE_TRACEME: ' + os.strerror(ctypes.get_errno()))\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)
_PTRACE_DETACH = 17


@pytest.fixture
def compared(monkeypatch):
    """Every argv the tracker compares with a spec's process.args: (container ID, argv or None)."""
    calls: list[tuple[str, object]] = []
    real_check = Container.check_args

    def check_args(container, argv):
        calls.append((container.container_id, None if argv is None else list(argv)))
        return real_check(container, argv)

    monkeypatch.setattr(Container, "check_args", check_args)
    return calls


class TestInitArgv:
    """The argv compared with the spec is the one the kernel held at the init's
    exec of its program, copied there, whatever the program does next."""

    pytestmark = ROOT_ONLY

    def test_runs_of_a_program_that_execs_at_once_are_not_flagged(self, seen, bundles, container_ids, notifier,
                                                                     compared):
        """20 foreground `runc run`s at once: each init's exec comes while its runc
        runs (RT_EV_INIT_EXEC)."""
        bundle = bundles.make(_EXECS_AT_ONCE)
        cids = [container_ids(f"bcct-execrun{i}") for i in range(20)]
        procs = [subprocess.Popen(["runc", "run", "--bundle", str(bundle), cid], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for cid in cids]
        for proc in procs:
            assert proc.wait(30) == 0, proc.stderr.read()
            proc.stderr.close()
        self._compared_as_run(seen.lifecycles(cids), compared, notifier, C["RT_EV_INIT_EXEC"])

    def test_created_and_started_programs_that_exec_at_once_are_not_flagged(self, seen, bundles, container_ids,
                                                                            notifier, compared):
        """20 creates, then their starts: each init's exec comes after its runc
        create ended (RT_EV_ORPHAN_INIT_EXEC), once the ADD is out."""
        bundle = bundles.make(_EXECS_AT_ONCE)
        cids = [container_ids(f"bcct-execstart{i}") for i in range(20)]
        for cid in cids:
            runc("create", "--bundle", str(bundle), cid)
        for cid in cids:
            runc("start", cid)
        lifecycles = seen.lifecycles(cids)
        for cid in cids:
            runc("delete", cid)
        self._compared_as_run(lifecycles, compared, notifier, C["RT_EV_ORPHAN_INIT_EXEC"])

    @staticmethod
    def _compared_as_run(lifecycles, compared, notifier, record_type: int) -> None:
        for cid, (add, remove) in lifecycles.items():
            assert add.container_config["process"]["args"] == _EXECS_AT_ONCE
            assert "args-differ" not in add.flags and "args-differ" not in remove.flags, cid
            assert [argv for c, argv in compared if c == cid and argv is not None] == [_EXECS_AT_ONCE], cid
            init = add.container_pid
            (record,) = [r for r in notifier.recent_records if r.type == record_type
                         and (r.init_pid if record_type == C["RT_EV_INIT_EXEC"] else r.pid) == init]
            assert record.argv == tuple(_EXECS_AT_ONCE) and not record.flags & C["RT_F_ARGS_TRUNCATED"]

    def test_a_program_other_than_the_recorded_specs_is_flagged(self, seen, bundles, container_ids, notifier,
                                                                 compared):
        """config.json rewritten after the recorder read it and before runc did:
        the container runs other args than the recorded spec's.

        The recorder reads config.json as it handles runc's exec record, a race
        it normally wins against runc's own read; here runc is held stopped at
        its exec until the recorder has read it, the file is rewritten, and runc
        let go. The recorder notices the rewrite (config-changed) and the argv
        it compares is the one runc really exec'd."""
        recorded, executed = ["true"], ["sh", "-c", "exit 0"]
        bundle = bundles.make(recorded)
        cid = container_ids("bcct-rewritten")
        proc = subprocess.Popen([sys.executable, "-c", _STOPPED_AT_EXEC, "runc", "run", "--bundle", str(bundle), cid],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        libc = ct.CDLL(None, use_errno=True)
        try:
            _, status = os.waitpid(proc.pid, 0)
            assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP, f"wait status {status:#x}"
            # the exec record is in the ring buffer before runc stops; once the
            # recorder has handled it, the tracker keeps the call, its spec read
            seen.caught_up()
            assert proc.pid in notifier._tracker.calls, "the recorder never handled runc's exec"
            config = json.loads((bundle / "config.json").read_text())
            config["process"]["args"] = executed
            (bundle / "config.json").write_text(json.dumps(config))
        finally:
            libc.ptrace(_PTRACE_DETACH, proc.pid, None, None)
        assert proc.wait(10) == 0, proc.stderr.read()
        proc.stderr.close()
        add, remove = seen.lifecycle(cid)
        assert add.container_config["process"]["args"] == recorded
        assert [argv for c, argv in compared if c == cid] == [executed]
        assert "args-differ" in add.flags and "config-changed" in add.flags
        assert remove.exit_code == 0


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


def _same_fs_dir(path: str, tmp_path) -> Path:
    """A directory on the filesystem of ``path``, for a hard link to it."""
    dev = os.stat(path).st_dev
    for candidate in (tmp_path, Path("/var/tmp")):
        if os.stat(candidate).st_dev == dev and os.access(candidate, os.W_OK):
            return candidate
    pytest.skip(f"a hard link must be on {path}'s filesystem, and neither {tmp_path} "
                "nor /var/tmp is (or is writable)")


# --------------------------------------------------------------- in-kernel filter


class TestKernelFilter:
    pytestmark = ROOT_ONLY

    def test_exec_storm_crosses_nothing(self, seen, notifier, tmp_path):
        """2000 execs of /bin/true: not one of their records reaches user space.

        Other runc calls on the host (another test run, containerd) may cross at the
        same time, so records are attributed by PID: the storm lists its children."""
        pids_file = tmp_path / "pids"
        before, lost = notifier.kernel_events, notifier.stats.lost
        start = time.monotonic()
        subprocess.run(
            ["sh", "-c", f"i=0; while [ $i -lt 2000 ]; do /bin/true & wait $!; echo $! >>{pids_file}; i=$((i+1)); done"],
            check=True,
        )
        elapsed = time.monotonic() - start
        seen.caught_up()
        storm = {int(p) for p in pids_file.read_text().split()}
        assert len(storm) == 2000
        crossed = notifier.kernel_events - before
        new_records = list(notifier.recent_records)[-crossed:] if crossed else []
        print(f"2000 execs in {elapsed:.2f}s; records crossed: {crossed}, from the storm: "
              f"{sum(r.pid in storm for r in new_records)}")
        assert crossed <= len(notifier.recent_records)
        assert not [r for r in new_records if r.pid in storm]
        assert all(notifier.runc_files.path(r.runc_id) for r in new_records if r.type == C["RT_EV_EXEC"])
        assert notifier.stats.lost == lost == 0
        assert not [e for e in seen.events if e.container_pid in storm]

    def test_runc_calls_that_make_no_container_cross_nothing(self, seen, notifier, tmp_path):
        """list, state, delete, kill: dropped in the kernel by their arguments. A call
        with a "run" that is only a flag's value crosses, and user space drops it."""
        before = notifier.kernel_events
        quiet = [subprocess.Popen(["runc", "--root", "root", cmd, *rest], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for cmd, rest in (("list", []), ("state", ["nope"]), ("delete", ["nope"]), ("kill", ["nope"]))]
        loud = subprocess.Popen(["runc", "--root", "run", "list"], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in [*quiet, loud]:
            p.wait()
        seen.caught_up()
        mine = list(notifier.recent_records)[-(notifier.kernel_events - before):] if notifier.kernel_events > before else []
        assert not [r for r in mine if r.pid in {p.pid for p in quiet}]
        assert [r.type for r in mine if r.pid == loud.pid][:1] == [C["RT_EV_EXEC"]]
        assert not [e for e in seen.events if e.runtime_root and str(tmp_path) in e.runtime_root]

    def test_a_program_named_runc_crosses_nothing(self, seen, notifier, tmp_path):
        """The name is not what makes runc: a program called runc, even at a watched
        path's name in another directory, is another inode."""
        impostor = tmp_path / "runc"
        shutil.copy2("/bin/sh", impostor)
        before = notifier.kernel_events
        # "run" as an argument: what would pass the kernel's look at the arguments
        procs = [subprocess.Popen([str(impostor), "-c", "true", "run"]) for _ in range(3)]
        for p in procs:
            p.wait()
        seen.caught_up()
        pids = {p.pid for p in procs}
        crossed = notifier.kernel_events - before
        new_records = list(notifier.recent_records)[-crossed:] if crossed else []
        assert not [r for r in new_records if r.pid in pids]
        assert not [e for e in seen.events if e.container_pid in pids]

    def test_an_inode_number_that_may_name_another_file_is_checked(self, seen, notifier, tmp_path):
        """On a filesystem whose inode numbers repeat across parts (btrfs subvolumes),
        a watched (device, inode) may be another file's too: such an entry is marked,
        and user space compares /proc/PID/exe by stat(2). Here an impostor is put in
        the map as runc's, marked so: its exec crosses once, is found not to be runc,
        and is forgotten in the kernel too (no exit record)."""
        impostor = tmp_path / "impostor"
        shutil.copy2("/bin/sh", impostor)
        table = notifier._bpf[b"runc_files"]
        fd = os.open(impostor, os.O_PATH | os.O_CLOEXEC)
        key, leaf = table.Key(), table.Leaf()
        fid = file_id(fd)
        key.dev, key.ino = fid.dev, fid.ino
        runc_id = next(iter(notifier.runc_files._by_id))
        leaf.id, leaf.flags = runc_id, C["RT_F_UNVERIFIED"]
        inos = notifier._bpf[b"runc_inos"]
        before = notifier.kernel_events
        table[key] = leaf
        inos[inos.Key(fid.ino)] = inos.Leaf(1)
        try:
            procs = [subprocess.Popen([str(impostor), "-c", "sleep 0.2", "run"]) for _ in range(3)]
            for p in procs:
                p.wait()
        finally:
            del inos[inos.Key(fid.ino)]
            del table[key]
            os.close(fd)
        seen.caught_up()
        pids = {p.pid for p in procs}
        mine = [r for r in list(notifier.recent_records)[-(notifier.kernel_events - before):] if r.pid in pids]
        assert sorted(r.type for r in mine) == [C["RT_EV_EXEC"]] * 3
        assert all(r.flags & C["RT_F_UNVERIFIED"] and r.runc_id == runc_id for r in mine)
        assert not [e for e in seen.events if e.container_pid in pids]


    def test_a_runc_run_wakes_user_space_three_times(self, seen, notifier, bundles, container_ids, tmp_path):
        """runc's exec, its container's start (the ADD) and its end (the REMOVE):
        runc's exit rides along with a later record (RT_RB_LATER), and the
        container's exit comes when its init is a zombie, with no polling for it.
        Counted as the notifier thread's sleeps (voluntary context switches) while
        the test's thread waits on runc."""
        bundle = bundles.make(["true"])
        status = f"/proc/self/task/{notifier._thread.native_id}/status"

        def sleeps() -> int:
            with open(status) as f:
                return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))

        # a root of its own: earlier tests' creates left an inotify watch on
        # /run/runc, which wakes the loop as each container's directory appears
        root = str(tmp_path / "root")
        ids = [container_ids(f"bcct-wake{i}", root=root) for i in range(10)]
        seen.caught_up()
        # one shell runs them all: this thread waits, and never holds the GIL
        # the notifier needs (waiting for it is a voluntary switch too)
        script = "for id in $IDS; do runc --root \"$ROOT\" run \"$id\" || exit 1; sleep 0.05; done"
        before = sleeps()
        subprocess.run(["sh", "-c", script], cwd=bundle, env={**os.environ, "IDS": " ".join(ids), "ROOT": root},
                       check=True, stdout=subprocess.DEVNULL)
        after = sleeps()
        for cid in ids:
            add, remove = seen.lifecycle(cid)
            assert add.bundle == str(bundle) and remove.exit_code == 0
        assert after - before <= 3 * len(ids) + 3


# ------------------------------------------------------------ watching by PID


class TestWatchByPid:
    pytestmark = ROOT_ONLY

    def test_external_process_killed_by_sigterm(self, seen, notifier):
        proc = subprocess.Popen(["sleep", "30"])
        notifier.add_watch_container_termination("bcct-external", proc.pid)
        seen.caught_up()  # the watch is armed: the kernel will see the exit
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        (remove,) = seen.until_removed("bcct-external")
        assert remove.type is EventType.REMOVE and remove.container_pid == proc.pid
        assert (remove.exit_code, remove.signal) == (None, signal.SIGTERM)
        # sent by the kernel once the process was a zombie: no polling for it
        assert [r.flags & C["RT_F_ENDED"] for r in notifier.recent_records
                if r.type == C["RT_EV_CONTAINER_EXIT"] and r.pid == proc.pid] == [C["RT_F_ENDED"]]

    def test_exit_under_a_parent_that_ignores_sigchld(self, seen, notifier):
        """No notification is sent and the kernel reaps the process at once: its
        exit still comes, with its code (from sched_process_free)."""
        code = ("import os, signal, sys, time\n"
                "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
                "pid = os.fork()\n"
                "if pid == 0:\n    time.sleep(0.3)\n    os._exit(5)\n"
                "print(pid, flush=True)\ntime.sleep(5)\n")
        parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            pid = int(parent.stdout.readline())
            notifier.add_watch_container_termination("bcct-autoreap", pid)
            (remove,) = seen.until_removed("bcct-autoreap", timeout=3)
            assert remove.container_pid == pid and (remove.exit_code, remove.signal) == (5, None)
        finally:
            parent.kill()
            parent.wait()

    def test_discover_running_reports_containers_started_before(self, bundles, container_ids, tmp_path):
        """A container started before the notifier: INITIAL on request, then its REMOVE."""
        bundle = bundles.make(["sleep", "100"])
        cid = container_ids("bcct-initial")
        runc("run", "-d", "--bundle", str(bundle), cid)
        pid = runc_pid(cid)
        with BccNotifier() as fresh:
            s = EventLog(fresh)
            fresh.discover_running()
            # The INITIAL is emitted just before the PID is armed in the kernel: a
            # kill in that instant would end it with "exit status unknown".
            s.caught_up()
            os.kill(pid, signal.SIGKILL)
            initial, remove = s.until_removed(cid)
        runc("delete", cid)
        assert initial.type is EventType.INITIAL and initial.container_pid == pid
        assert initial.bundle == str(bundle) and initial.container_config["process"]["args"] == ["sleep", "100"]
        assert remove.type is EventType.REMOVE and remove.signal == signal.SIGKILL


# ---------------------------------------------------------------- the same as fanotify


@pytest.mark.root
def test_same_events_as_fanotify(notifier, bundles, container_ids, tmp_path):
    """Both backends at once, on the same containers: the same facts."""
    bcc_seen = EventLog(notifier)
    bcc_seen.caught_up()
    with FanotifyNotifier() as fan:
        fan_seen = EventLog(fan)
        bundle = bundles.make(["sh", "-c", "sleep 0.2; exit 5"])
        a = container_ids("bcct-cmp-run")
        runc("run", "--bundle", str(bundle), a, check=False)
        b = container_ids("bcct-cmp-create")
        runc("create", "--pid-file", str(tmp_path / "p.pid"), b, cwd=bundle)
        runc("start", b)
        facts = {}
        for name, s in (("bcc", bcc_seen), ("fanotify", fan_seen)):
            facts[name] = [
                (e.type, e.container_id, e.container_pid, e.bundle, e.container_config, e.runtime,
                 e.runtime_root, e.runtime_args, e.exit_code, e.signal, e.error,
                 e.caller, e.manager, e.mntns, e.pidns, e.netns, e.cgroup)
                for cid in (a, b) for e in s.lifecycle(cid)
            ]
        runc("delete", b)
    assert facts["bcc"] == facts["fanotify"]


# ------------------------------------------------------------ replaced binaries


@pytest.mark.root
def test_the_map_follows_a_replaced_binary(bundles, container_ids, tmp_path):
    """A package upgrade renames a new runc over the old one: the kernel must now
    know the new inode, and no longer the old one (its number is free for another
    file once the old file is closed)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    runc_bin = bindir / "runc"
    shutil.copy2(os.path.realpath(shutil.which("runc")), runc_bin)
    bundle = bundles.make(["true"])
    with BccNotifier(runc_paths=(str(runc_bin),)) as n:
        s = EventLog(n)
        table, inos = n._bpf[b"runc_files"], n._bpf[b"runc_inos"]

        def in_kernel(path) -> bool:
            with open(path, "rb") as f:
                fid = file_id(f.fileno())
            key = table.Key()
            key.dev, key.ino = fid.dev, fid.ino
            # both maps, or neither: the kernel tests the number alone first
            assert (key in table) == (inos.Key(fid.ino) in inos)
            return key in table

        old = os.open(runc_bin, os.O_PATH | os.O_CLOEXEC)  # the old file, to look it up after
        try:
            assert in_kernel(runc_bin)
            # as dpkg does: write the new file beside the old one, then rename it over
            shutil.copy2(runc_bin, bindir / "runc.dpkg-new")
            os.rename(bindir / "runc.dpkg-new", runc_bin)
            s.caught_up()  # the rename's inotify event came first
            assert in_kernel(runc_bin), "the new inode never reached the kernel's map"
            assert not in_kernel(f"/proc/self/fd/{old}")
        finally:
            os.close(old)
        cid = container_ids("bcct-replaced")
        subprocess.run([str(runc_bin), "run", "--bundle", str(bundle), cid], check=True, capture_output=True)
        add, _ = s.lifecycle(cid)
        assert add.runtime == str(runc_bin)


# --------------------------------------------------------------------- closing


@pytest.mark.root
def test_kernel_drops_become_lost_events_and_a_note():
    """The loop reads the sum of the drop counters after each wake-up, and the
    counter of each kind only when the sum moved: set both as the BPF program's
    count() does, and the drop must show in the stats."""
    n = BccNotifier()
    try:
        log = EventLog(n)  # each caught_up() is a wake-up, after which the counters were read
        counters = n._bpf[b"counters"]
        counters[ct.c_int(C["RT_C_RINGBUF_FULL"])] = ct.c_uint64(2)
        log.caught_up()  # the kind alone: not looked at
        assert n.stats.lost == 0
        counters[ct.c_int(C["RT_C_ANY"])] = ct.c_uint64(2)
        log.caught_up()
        assert n.stats.lost == 2
        assert any("ring buffer full" in note for note in n.stats.notes)
    finally:
        n.close()


# ------------------------------------------------------- pure: no kernel needed


def _exec_record(argv: list[bytes], filename: bytes = b"/usr/sbin/runc", flags: int = 0, *,
                 kind: str = "RT_EV_EXEC", pid: int = 42, init_pid: int = 0, runc_id: int = 3) -> bytes:
    ev = RtExecEvent()
    ev.hdr.type, ev.hdr.pid, ev.hdr.ktime_ns, ev.hdr.flags, ev.hdr.init_pid = C[kind], pid, 7, flags, init_pid
    packed = b"".join(a + b"\0" for a in argv)
    ev.argc, ev.args_size, ev.runc_id, ev.filename = len(argv), len(packed), runc_id, filename
    ct.memmove(ct.addressof(ev) + RtExecEvent.args.offset, packed, len(packed))
    return bytes(ev)[: RtExecEvent.args.offset + len(packed)]  # as the kernel sends it


def _init_record(kind: str, pid: int, argv: list[bytes], init_pid: int = 0, flags: int = 0) -> bytes:
    """An init's exec record: RT_EV_INIT_EXEC (pid: its runc) or RT_EV_ORPHAN_INIT_EXEC."""
    return _exec_record(argv, b"", flags, kind=kind, pid=pid, init_pid=init_pid, runc_id=0)


def test_decode_exec_record():
    rec = decode_record(_exec_record([b"runc", b"--root", b"/r", b"run", b"x"]))
    assert (rec.type, rec.pid, rec.ktime_ns, rec.status) == (C["RT_EV_EXEC"], 42, 7, None)
    assert rec.filename == "/usr/sbin/runc" and rec.runc_id == 3
    assert rec.argv == ("runc", "--root", "/r", "run", "x")


def test_decode_init_exec_records():
    raw = bytearray(_init_record("RT_EV_INIT_EXEC", 20, [b"sh", b"-c", b"exec sleep 1", b""], init_pid=21))
    raw[RtEvent.mntns.offset:RtEvent.netns.offset + 4] = struct.pack("=III", 11, 12, 13)
    rec = decode_record(bytes(raw))
    assert (rec.type, rec.pid, rec.init_pid, rec.filename) == (C["RT_EV_INIT_EXEC"], 20, 21, "")
    assert rec.argv == ("sh", "-c", "exec sleep 1", "")  # an empty argument is one
    assert rec.namespaces == {"mntns": 11, "pidns": 12, "netns": 13}
    rec = decode_record(_init_record("RT_EV_ORPHAN_INIT_EXEC", 21, [b"true"]))
    assert (rec.pid, rec.init_pid, rec.argv, rec.namespaces) == (21, None, ("true",), None)


def test_decode_exit_records():
    ev = RtEvent(type=C["RT_EV_RUNC_EXIT"], pid=9, ktime_ns=1, status=7 << 8,
                 flags=C["RT_F_STATUS_KNOWN"], init_pid=10)
    rec = decode_record(bytes(ev))
    assert (rec.status, rec.init_pid) == (7 << 8, 10)
    ev.flags, ev.init_pid = 0, 0
    assert decode_record(bytes(ev)).status is None and decode_record(bytes(ev)).init_pid is None


def test_decode_exec_record_ignores_stale_bytes_after_the_filename():
    raw = bytearray(_exec_record([b"runc", b"run", b"x"]))
    off = RtExecEvent.filename.offset + len(b"/usr/sbin/runc") + 1
    raw[off:off + 5] = b"stale"  # the kernel reuses its scratch buffer
    assert decode_record(bytes(raw)).filename == "/usr/sbin/runc"


def test_kernel_dev_is_mkdev_not_stats_encoding():
    """stat(2) encodes a device with the minor's low byte first and its high bits
    above the major (new_encode_dev); the kernel's s_dev is major << 20 | minor."""
    st_dev = os.makedev(8, 300)  # a minor above 255: the two encodings differ most
    assert st_dev == (300 & 0xFF) | (8 << 8) | ((300 & ~0xFF) << 12)
    assert kernel_dev(os.major(st_dev), os.minor(st_dev)) == (8 << 20) | 300
    assert kernel_dev(os.major(st_dev), os.minor(st_dev)) != st_dev


def _mountinfo_device(mount_point: str) -> tuple[int, int]:
    with open("/proc/self/mountinfo") as f:
        found = [line.split()[2] for line in f if line.split()[4] == mount_point]
    major, minor = found[-1].split(":")  # the last mount there is the one seen
    return int(major), int(minor)


@pytest.mark.parametrize("path, mount_point", [("/usr/sbin/runc", "/"), ("/proc/self/status", "/proc")])
def test_file_id_is_the_superblocks_device(path, mount_point):
    """A file's kernel id: its mount's device as /proc/self/mountinfo shows it (the
    superblock's s_dev), in the kernel's encoding, and its inode number. On
    these filesystems stat agrees on the device."""
    assert os.path.ismount(mount_point)
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        fid, st = file_id(fd), os.fstat(fd)
    finally:
        os.close(fd)
    assert (os.major(st.st_dev), os.minor(st.st_dev)) == _mountinfo_device(mount_point)
    assert fid.dev == kernel_dev(*_mountinfo_device(mount_point))
    assert (fid.ino, fid.stat, fid.shared) == (st.st_ino, (st.st_dev, st.st_ino), False)


class _FakeMap:
    """A BCC table's surface as RuncFiles uses it, keyed by the key's field values."""

    def __init__(self, key_fields: tuple[str, ...]) -> None:
        self.key_fields, self.items = key_fields, {}

    def Key(self, *values):
        return SimpleNamespace(**dict(zip(self.key_fields, values)))

    def Leaf(self, *values):
        return SimpleNamespace(value=values[0] if values else None)

    def _k(self, key):
        return tuple(getattr(key, f) for f in self.key_fields)

    def __setitem__(self, key, leaf):
        self.items[self._k(key)] = leaf

    def __delitem__(self, key):
        del self.items[self._k(key)]


def _binary(path) -> RuncBinary:
    st = os.stat(path)
    return RuncBinary(str(path), st.st_dev, st.st_ino, (str(path),))


def test_runc_files_follow_a_replaced_binary_and_keep_its_id(tmp_path):
    """The maps hold exactly the binaries found now; a replaced binary's entry
    leaves the maps (its file closed after), but an exec the kernel matched to it
    before still resolves."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"\x7fELF a")
    b.write_bytes(b"\x7fELF b")
    files, inos = _FakeMap(("dev", "ino")), _FakeMap(("value",))
    rf = RuncFiles(files, inos)
    fds_before = fds()
    assert rf.follow([_binary(a), _binary(b)])
    assert fds() == fds_before + 2  # each entry holds its file
    assert sorted(ino for (ino,) in inos.items) == sorted(os.stat(p).st_ino for p in (a, b))
    (old_key, old_leaf), = [(k, v) for k, v in files.items.items() if k[1] == os.stat(a).st_ino]
    assert rf.path(old_leaf.id) == str(a) and not old_leaf.flags
    assert not rf.follow([_binary(a), _binary(b)])  # nothing new
    (tmp_path / "a.new").write_bytes(b"\x7fELF a2")
    os.rename(tmp_path / "a.new", a)
    assert rf.follow([_binary(a), _binary(b)])
    assert old_key not in files.items and (old_key[1],) not in inos.items
    assert len(files.items) == 2 and fds() == fds_before + 2  # the old file closed
    assert rf.path(old_leaf.id) == str(a)  # an exec matched before the replacement
    assert sorted(rf.paths) == [str(a), str(b)]
    rf.close()
    assert fds() == fds_before


def test_runc_files_tell_apart_files_that_share_the_kernels_identity(tmp_path, monkeypatch):
    """On btrfs two subvolumes' files can have the same superblock device and inode
    number: one entry, marked unverified, and user space picks by stat(2)."""
    python = os.path.realpath(sys.executable)  # the file this process runs
    other = tmp_path / "other"
    other.write_bytes(b"\x7fELF")

    def same_identity(fd):
        st = os.fstat(fd)
        return inodes.FileId(kernel_dev(0, 99), 256, (st.st_dev, st.st_ino), True)

    monkeypatch.setattr(inodes, "file_id", same_identity)
    files, inos = _FakeMap(("dev", "ino")), _FakeMap(("value",))
    rf = RuncFiles(files, inos)
    rf.follow([_binary(other), _binary(python)])
    ((key, leaf),) = files.items.items()
    assert key == (kernel_dev(0, 99), 256) and leaf.flags == C["RT_F_UNVERIFIED"]
    assert rf.path_run_by(leaf.id, os.getpid()) == python
    child = subprocess.Popen(["sleep", "5"])  # runs neither
    try:
        assert rf.path_run_by(leaf.id, child.pid) is None
    finally:
        child.kill()
        child.wait()
    with pytest.raises(OSError):
        rf.path_run_by(leaf.id, child.pid)  # gone
    rf.close()


def test_both_backends_know_runcs_init_by_the_same_name():
    from runctrace.runc.binaries import RUNC_INIT_COMM

    assert f'#define RT_INIT_COMM "{RUNC_INIT_COMM.decode()}"' in bpf_source(HEADER)


class _ScriptedTracker:
    """The tracker's entry points, as calls recorded; ``fail`` names one that raises, once."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def __getattr__(self, name: str):
        def entry_point(*args, **kwargs):
            self.calls.append((name, *args, *kwargs.values()))
            if name == self.fail:
                self.fail = ""
                raise RuntimeError(f"injected: {name} fails")
        return entry_point


def _drain_offline(tracker: _ScriptedTracker, *records: RtEvent | bytes) -> BccNotifier:
    """A notifier's ring buffer handling, given these records, with no kernel."""
    n = BccNotifier.__new__(BccNotifier)
    n.stats, n._tracker, n.kernel_events, n.recent_records = Stats(), tracker, 0, []
    n._records = [bytes(r) for r in records]
    n._bpf = SimpleNamespace(ring_buffer_consume=lambda: None)  # the records are "consumed" already
    n._drain_ring()
    return n


def test_the_inits_exec_records_have_its_argv_compared():
    """A create's init starting after its runc ended (RT_EV_ORPHAN_INIT_EXEC), or
    while its runc is still there (a `run`, or a start that beat the create's
    exit: RT_EV_INIT_EXEC): the argv in the record goes to the tracker, as a list."""
    tracker = _ScriptedTracker()
    _drain_offline(tracker, _init_record("RT_EV_ORPHAN_INIT_EXEC", 4321, [b"sleep", b"1"]),
                   _init_record("RT_EV_INIT_EXEC", 20, [b"sh", b"-c", b"exec x"], init_pid=21))
    argv = ["sh", "-c", "exec x"]
    assert tracker.calls == [("init_exec", 4321, ["sleep", "1"]), ("init_started", 20, 21, None, argv),
                             ("init_exec", 21, argv)]


def test_an_init_argv_the_kernel_cut_short_is_not_compared():
    """A truncated init argv is passed as None (not compared): its kept part can
    never show that the whole matches the spec."""
    tracker = _ScriptedTracker()
    cut = C["RT_F_ARGS_TRUNCATED"]
    _drain_offline(tracker, _init_record("RT_EV_ORPHAN_INIT_EXEC", 4321, [b"sleep"], flags=cut),
                   _init_record("RT_EV_INIT_EXEC", 20, [], init_pid=21, flags=cut))
    assert tracker.calls == [("init_exec", 4321, None), ("init_started", 20, 21, None, None), ("init_exec", 21, None)]


def test_a_record_whose_handling_raises_is_counted_and_the_batch_goes_on():
    tracker = _ScriptedTracker(fail="runc_exited")
    n = _drain_offline(tracker, RtEvent(type=C["RT_EV_RUNC_EXIT"], pid=10, ktime_ns=1, init_pid=11),
                       _init_record("RT_EV_ORPHAN_INIT_EXEC", 11, [b"true"]))
    assert tracker.calls == [("runc_exited", 10, None, 11), ("init_exec", 11, ["true"])]
    assert n.stats.errors == 1 and n.kernel_events == 2


def test_decode_rejects_short_records():
    with pytest.raises(ValueError):
        decode_record(b"\0" * 8)
    with pytest.raises(ValueError):
        decode_record(_exec_record([b"runc"])[: RtExecEvent.args.offset - 1])


def test_parse_call_after_runc_chdir():
    """cwd read after runc's chdir into --bundle is the bundle, not the start dir."""
    argv = ["runc", "create", "--bundle", "b", "--pid-file", "b/init.pid", "x"]
    before = parse_call(argv, "/work")
    assert (before.bundle, before.pid_file) == ("/work/b", "/work/b/init.pid")
    after = parse_call(argv, "/work/b", cwd_may_be_bundle=True)
    assert after.bundle == "/work/b"
    assert after.pid_file is None  # relative to a directory no longer known: use state.json
    # without --bundle, runc does not chdir: the cwd is the bundle either way
    assert parse_call(["runc", "run", "x"], "/work/b", cwd_may_be_bundle=True).bundle == "/work/b"


def test_parse_call_read_late_but_before_runc_chdir(tmp_path):
    """A cwd read late may still be the caller's: runc's chdir comes ms after its
    exec. The bundle on disk tells which."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{}")
    start, bundle = str(tmp_path), str(tmp_path / "b")
    relative = ["runc", "create", "--bundle", "b", "--pid-file", "init.pid", "x"]
    call = parse_call(relative, start, cwd_may_be_bundle=True)  # not moved yet
    assert (call.bundle, call.pid_file) == (bundle, f"{start}/init.pid")
    call = parse_call(relative, bundle, cwd_may_be_bundle=True)  # moved
    assert (call.bundle, call.pid_file) == (bundle, None)
    absolute = ["runc", "run", "--bundle", bundle, "--pid-file", "init.pid", "x"]
    call = parse_call(absolute, start, cwd_may_be_bundle=True)  # not moved yet
    assert (call.bundle, call.pid_file) == (bundle, f"{start}/init.pid")
    assert parse_call(absolute, bundle, cwd_may_be_bundle=True).pid_file is None  # moved


def test_process_alive():
    assert process_alive(os.getpid())
    with open("/proc/self/stat", "rb") as f:
        start = int(f.read().rsplit(b")", 1)[1].split()[19])
    assert process_alive(os.getpid(), start)
    assert not process_alive(os.getpid(), start + 1)  # same PID, another process
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not process_alive(proc.pid)


def test_init_started_prefers_runcs_state_over_the_kernels_pid(tmp_path):
    """If runc's own state.json for this call names another init than the kernel
    record did, runc's record wins (and a `run` arms no state watch)."""
    from runctrace.backends.base import Stats
    from runctrace.runc.tracker import Tracker, read_stat

    events = []
    tracker = Tracker("test", events.append, Stats(), lambda *_: None, sees_inits=True)
    root, bundle = tmp_path / "root", tmp_path / "b"
    (root / "c1").mkdir(parents=True)
    bundle.mkdir()
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "hostname": "h"}')
    me = os.getpid()  # stands in for the runc process: it started before the init below
    child = subprocess.Popen(["sleep", "5"])
    try:
        tracker.runc_started(me, ["runc", "--root", str(root), "run", "--bundle", str(bundle), "c1"], str(tmp_path), "runc")
        assert not tracker.states.expected
        state = {"id": "c1", "init_process_pid": child.pid, "init_process_start": read_stat(child.pid).start,
                 "created": "2026-11-28T10:02:13Z"}
        (root / "c1" / "state.json").write_text(json.dumps(state, separators=(",", ":")))
        tracker.init_started(me, 4_000_000)  # the kernel named another PID
        (add,) = events
        assert add.type is EventType.ADD and add.container_pid == child.pid
        assert add.container_config["hostname"] == "h"
        assert add.time_ns == rfc3339_to_ns("2026-11-28T10:02:13Z")
    finally:
        child.kill()
        child.wait()
        tracker.close()


def test_a_pid_taken_by_another_container_ends_the_one_that_had_it():
    """An exit reported late (or lost) must not end the container that reused the
    PID: the first one is ended when the second is watched, status unknown."""
    from runctrace.backends.base import Stats
    from runctrace.runc.tracker import Tracker

    events = []
    tracker = Tracker("test", events.append, Stats(), lambda *_: None)
    tracker.watch_pid("old", 4242)
    tracker.watch_pid("old", 4242)  # the same container again: nothing ends
    assert events == []
    tracker.watch_pid("new", 4242)
    (removed,) = events
    assert (removed.type, removed.container_id, removed.container_pid) == (EventType.REMOVE, "old", 4242)
    assert "reused" in removed.error
    assert tracker.containers[4242].container_id == "new"


@pytest.mark.root
def test_a_dead_predecessors_entry_does_not_end_the_process_that_took_its_pid(notifier):
    """A watched PID whose parent ignored SIGCHLD is reported only when its task is
    freed, an RCU grace period after the PID was: a new process may take the PID
    first. Watching that one clears the stale entry, which would end it."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        table = notifier._bpf[b"containers"]
        stale = table.Leaf()
        stale.exit_ns = 1  # what the kernel leaves at an exit not yet sent
        table[table.Key(proc.pid)] = stale
        notifier.add_watch_container_termination("bcct-stale", proc.pid)
        EventLog(notifier).caught_up()  # the watch request was served first
        assert table[table.Key(proc.pid)].exit_ns == 0
    finally:
        proc.kill()
        proc.wait()


class _FullMap:
    """BCC's libbcc, except that every map insert fails as a full map's does."""

    def __init__(self, lib) -> None:
        self._real = lib

    def __getattr__(self, name):
        return getattr(self._real, name)

    def bpf_update_elem(self, *args):
        ct.set_errno(errno.E2BIG)
        return -1


@pytest.mark.root
def test_a_pid_the_kernel_cannot_watch_is_polled_and_still_ends(seen, notifier):
    """With the containers map full, the exit is looked for in /proc every second:
    it comes, late and without its status, and the stats say why."""
    proc = subprocess.Popen(["sleep", "0.3"])
    real = notifier.exits._lib
    notifier.exits._lib = _FullMap(real)
    try:
        notifier.add_watch_container_termination("bcct-unwatched", proc.pid)
        proc.wait()
        (remove,) = seen.until_removed("bcct-unwatched", timeout=5)
    finally:
        notifier.exits._lib = real
    assert remove.container_pid == proc.pid and remove.exit_code is None
    assert "not watched in the kernel" in remove.error
    assert any("containers map full" in n for n in notifier.stats.notes)
