"""Real containers, real kernel: every runc invocation style, on every backend.

Each test asserts exactly one add and one remove per container, with the PID runc
itself reports and the spec that was in the bundle.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import EventLog, fd_count, runc, runc_pid, thread_count, wait_for_pid
from runctrace.backends import backend_class
from runctrace.events import EventType
from runctrace.runc.tracker import parse_call
from runctrace.runc.files import rfc3339_to_ns

pytestmark = pytest.mark.root

# the `backend` and `log` fixtures (every backend in turn) are conftest.py's


def test_run_foreground(log, bundles, container_ids):
    b = bundles.make(["sleep", "0.3"])
    cid = container_ids()
    proc = subprocess.Popen(["runc", "run", cid], cwd=b, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pid = wait_for_pid(cid)
    assert proc.wait(10) == 0, proc.stderr.read()
    log.wait_removed(cid)
    log.settle()
    add, remove = log.assert_one_lifecycle(cid, pid)
    assert add.bundle == str(b)
    assert add.container_config["process"]["args"] == ["sleep", "0.3"]
    assert add.runtime_args[1:] == ["run", cid]
    assert remove.exit_code == 0 and remove.signal is None
    assert add.backend == log.notifier.name


def test_run_is_resolved_when_its_init_starts(log, bundles, container_ids):
    """No state-file watch for a foreground `runc run`: its ADD comes while runc still
    runs, from the kernel's word that the init is starting its program (bcc: its
    tracepoints; fanotify: the connector's COMM of runc's init, then its EXEC),
    with runc's own PID and creation time."""
    b = bundles.make(["sleep", "3"])
    cid = container_ids()
    assert not log.notifier._tracker._needs_state_watch(parse_call(["runc", "run", cid], str(b)))
    proc = subprocess.Popen(["runc", "run", cid], cwd=b, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = wait_for_pid(cid)
        created = json.loads(runc("state", cid).stdout)["created"]
        log.wait(lambda evs: any(e.container_id == cid for e in evs), timeout=2)
        (add,) = log.of(cid)
        assert proc.poll() is None, "runc run should still be running"
        assert add.type is EventType.ADD and add.container_pid == pid and add.error is None
        assert add.time_ns == rfc3339_to_ns(created)
        assert not log.notifier._tracker.states.expected  # nothing was waited for on disk
    finally:
        proc.kill()
        proc.wait()


def test_run_whose_init_ended_before_its_name_was_read(bundles, container_ids, monkeypatch):
    """fanotify, when its loop is so far behind that a `runc run`'s init had already
    ended when its rename was read: the init's exit message names its runc, and the
    container is still reported, with its exit code; not taken for a failed create."""
    from runctrace.backends.fanotify import FanotifyNotifier
    from runctrace.backends.fanotify.correlator import Correlator

    def late(self, pid, when_ns):
        self._inits[pid] = None  # as if /proc/PID were already gone
        self._untied_init_ns = when_ns

    monkeypatch.setattr(Correlator, "_on_init_named", late)
    b = bundles.make(["sh", "-c", "exit 3"])
    with FanotifyNotifier() as notifier:
        log = EventLog(notifier)
        cid = container_ids()
        assert runc("run", cid, cwd=b, check=False).returncode == 3
        log.wait_removed(cid)
        log.settle()
        add, remove = log.assert_one_lifecycle(cid)
        assert add.container_pid and add.error is None
        assert remove.exit_code == 3
        assert notifier.stats.failed_creates == 0


def test_runc_calls_gone_unread(bundles, container_ids, monkeypatch):
    """fanotify, for runc calls that ended before their arguments were read (their
    messages held while coalescing, or the loop behind): one that made no container
    is counted as unread and costs no look on disk; one whose container still runs
    is counted as missed, and the container is found on disk."""
    from runctrace.backends import fanotify
    from runctrace.backends.fanotify import correlator

    real_read = correlator.read_proc

    def read_proc(path):
        raw = real_read(path)
        if path.endswith("/cmdline") and (b"\0state\0" in raw or b"\0-d\0" in raw):
            raise FileNotFoundError(errno.ENOENT, "gone", path)  # as if that runc had exited already
        return raw

    monkeypatch.setattr(correlator, "read_proc", read_proc)
    sleeper = bundles.make(["sleep", "30"])
    with fanotify.FanotifyNotifier() as notifier:
        log = EventLog(notifier)
        resyncs = []
        resync = notifier._tracker.resync
        notifier._tracker.resync = lambda: (resyncs.append(1), resync())
        for _ in range(5):
            assert runc("state", container_ids("none"), check=False).returncode != 0
        log.settle()
        assert notifier.stats.unread >= 5, notifier.stats
        assert notifier.stats.missed == 0 and resyncs == [], notifier.stats
        cid = container_ids()
        runc("run", "-d", cid, cwd=sleeper)
        try:
            log.wait(lambda evs: any(e.container_id == cid for e in evs))
        finally:
            runc("delete", "--force", cid)
        log.wait_removed(cid)
        add, remove = log.assert_one_lifecycle(cid)
        assert "missed" in add.error and remove.signal == 9
        assert notifier.stats.missed >= 1 and resyncs, notifier.stats
        # a call that lived longer than a short one may have made a container
        # without an init naming itself (a restore): looked at on disk too
        monkeypatch.setattr(correlator, "_UNREAD_SHORT_NS", 0)
        missed, looked = notifier.stats.missed, len(resyncs)
        runc("state", container_ids("none"), check=False)
        log.settle()
        assert notifier.stats.missed > missed and len(resyncs) > looked, notifier.stats


def test_a_resync_asked_while_settling_is_not_left_for_the_next_wake_up():
    """fanotify: messages read while settling a wake-up (an exit of a runc call
    gone unread, a queue overflow) can ask for a look at runc's state on disk.
    It is done in the same wake-up: on a quiet host the next may be long in coming."""
    from runctrace.backends.fanotify import FanotifyNotifier

    class Asks(FanotifyNotifier):
        armed = False
        passes = 0  # of the loop: one a wake-up
        asked_in = None

        def _expire_pending(self):
            self.passes += 1
            super()._expire_pending()

        def _settle(self):
            super()._settle()
            if self.armed:
                self.armed = False
                self.asked_in = self.passes
                self._resync = True  # as such a message does

    with Asks() as notifier:
        looked_in = []
        resync = notifier._tracker.resync
        notifier._tracker.resync = lambda: (looked_in.append(notifier.passes), resync())
        time.sleep(0.2)
        notifier.armed = True
        subprocess.run(["/bin/true"], check=True)  # one exec and exit: a wake-up
        deadline = time.monotonic() + 2
        while notifier.asked_in is None or not looked_in or looked_in[-1] < notifier.asked_in:
            assert time.monotonic() < deadline, "no resync"
            time.sleep(0.01)
        # done in the pass that asked for it, not in a later one
        assert notifier.asked_in in looked_in, (notifier.asked_in, looked_in)


def test_fanotify_enriches_an_init_that_ends_at_once(bundles, container_ids, monkeypatch):
    """fanotify reads the init's namespaces and cgroup at its rename: `true` has
    often ended by the time its exec's message is read (messages are held), which
    left 23 of 100 instant containers without a cgroup and 31 without namespaces.
    Here each init lives 50 ms, longer than messages are held, and its exec is
    handled only once it has ended."""
    from runctrace.backends.fanotify import FanotifyNotifier
    from runctrace.backends.fanotify.correlator import Correlator

    original = Correlator._init_execd

    def after_its_end(self, runc_pid, init_pid, *args):
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{init_pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        break
            except OSError:
                break
            time.sleep(0.001)
        return original(self, runc_pid, init_pid, *args)

    monkeypatch.setattr(Correlator, "_init_execd", after_its_end)
    b = bundles.make(["sleep", "0.05"])
    host = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in ("mnt", "pid", "net")}
    with FanotifyNotifier() as notifier:
        log = EventLog(notifier)
        ids = [container_ids() for _ in range(5)]
        for cid in ids:
            runc("run", cid, cwd=b)
        log.wait_removed(*ids)
        adds = [log.assert_one_lifecycle(cid)[0] for cid in ids]
    for add in adds:
        assert add.cgroup and add.container_id in add.cgroup, add.describe()
        assert add.mntns and add.pidns and add.netns, add.describe()
        assert add.mntns != host["mnt"] and add.pidns != host["pid"] and add.netns != host["net"]


def test_fanotify_keeps_what_it_read_at_the_rename_when_runc_exits_first(bundles, container_ids, monkeypatch):
    """fanotify: a `runc run -d` is resolved at its runc's exit when that message
    comes before its init's exec. What the init's rename showed (namespaces,
    cgroup) is used then too: the container may have ended by the time runc's exit
    is read. Here the init's exec is ignored, and runc's exit is handled only once
    the container has ended."""
    from runctrace.runc import tracker as resolve
    from runctrace.backends.fanotify import FanotifyNotifier
    from runctrace.backends.fanotify.correlator import Correlator
    from runctrace.runc.files import read_state

    monkeypatch.setattr(Correlator, "_init_execd", lambda self, *args: None)
    original = resolve.Tracker.runc_exited

    def after_its_container(self, pid, status, *args):
        rexec = self.calls.get(pid)
        state = read_state(rexec.call.state_dir)[0] if rexec is not None else None
        deadline = time.monotonic() + 2
        while state is not None and time.monotonic() < deadline:
            try:
                with open(f"/proc/{state['init_process_pid']}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        break
            except OSError:
                break
            time.sleep(0.001)
        return original(self, pid, status, *args)

    monkeypatch.setattr(resolve.Tracker, "runc_exited", after_its_container)
    b = bundles.make(["sleep", "0.05"])
    host = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in ("mnt", "pid", "net")}
    with FanotifyNotifier() as notifier:
        log = EventLog(notifier)
        ids = [container_ids() for _ in range(3)]
        try:
            for cid in ids:
                runc("run", "-d", cid, cwd=b)
            log.wait_removed(*ids)
        finally:
            for cid in ids:
                runc("delete", "--force", cid, check=False)
        adds = [log.assert_one_lifecycle(cid)[0] for cid in ids]
    for add in adds:
        assert add.container_pid, add.describe()
        assert add.cgroup and add.container_id in add.cgroup, add.describe()
        assert add.mntns and add.pidns and add.netns, add.describe()
        assert add.mntns != host["mnt"] and add.pidns != host["pid"] and add.netns != host["net"]


def test_run_foreground_instant_exit(log, bundles, container_ids):
    """/bin/true ends within a millisecond of starting: the PID must still be found."""
    b = bundles.make(["true"])
    ids = [container_ids() for _ in range(5)]
    for cid in ids:
        runc("run", cid, cwd=b)
    log.wait_removed(*ids)
    log.settle()
    for cid in ids:
        add, remove = log.assert_one_lifecycle(cid)
        assert add.error is None
        assert remove.exit_code == 0


def test_run_detached_and_kill(log, bundles, container_ids):
    b = bundles.make(["sleep", "30"])
    cid = container_ids()
    runc("run", "-d", "--bundle", str(b), cid)
    pid = runc_pid(cid)
    init_ns = {ns: os.stat(f"/proc/{pid}/ns/{ns}").st_ino for ns in ("mnt", "pid", "net")}
    runc("kill", cid, "KILL")
    log.wait_removed(cid)
    runc("delete", cid)
    log.settle()
    add, remove = log.assert_one_lifecycle(cid, pid)
    assert remove.signal == 9 and remove.exit_code is None
    # enrichment, read from the living init (or, on bcc, in the kernel as it exec'd)
    assert add.manager == "by-hand" and add.caller
    host_ns = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in ("mnt", "pid", "net")}
    assert (add.mntns, add.pidns, add.netns) == (init_ns["mnt"], init_ns["pid"], init_ns["net"])
    assert add.mntns != host_ns["mnt"] and add.pidns != host_ns["pid"] and add.netns != host_ns["net"]
    assert add.cgroup and cid in add.cgroup
    assert remove.started_ns == add.time_ns


def test_create_start_delete_without_pid_file(log, bundles, container_ids):
    b = bundles.make(["sh", "-c", "exit 7"])
    cid = container_ids()
    runc("create", cid, cwd=b)  # no --bundle: the bundle is runc's working directory
    pid = runc_pid(cid)
    runc("start", cid)
    log.wait_removed(cid)
    runc("delete", cid)
    log.settle()
    add, remove = log.assert_one_lifecycle(cid, pid)
    assert add.bundle == str(b)
    assert remove.exit_code == 7


def test_create_like_containerd_shim(log, bundles, container_ids, tmp_path):
    """The exact argument shape of containerd's shim, with global flags and a pid file."""
    b = bundles.make(["sleep", "0.2"])
    root = str(tmp_path / "runc-root")
    cid = container_ids(root=root)
    pid_file = b / "init.pid"
    runc(
        "--log", str(b / "log.json"), "--log-format", "json",
        "create", "--bundle", str(b), "--pid-file", str(pid_file), cid, root=root,
    )
    pid = int(pid_file.read_text())
    runc("start", cid, root=root)
    log.wait_removed(cid)
    runc("delete", cid, root=root)
    log.settle()
    add, _ = log.assert_one_lifecycle(cid, pid)
    assert add.runtime_root == root
    assert add.container_config["hostname"] == b.name


def test_equals_forms_and_new_root(log, bundles, container_ids, tmp_path):
    """--flag=value everywhere, and a --root directory runc has never used before."""
    b = bundles.make(["true"])
    root = str(tmp_path / "never-used" / "root")
    cid = container_ids(root=root)
    subprocess.run(
        ["runc", f"--root={root}", "--debug=false", "--log-format=text", "run", f"--bundle={b}", "--no-pivot=false", cid],
        check=True, capture_output=True,
    )
    log.wait_removed(cid)
    log.settle()
    add, _ = log.assert_one_lifecycle(cid)
    assert add.runtime_root == root and add.bundle == str(b)


def test_symlinked_config_gives_add_with_error(log, bundles, container_ids, tmp_path):
    """runc follows a symlinked config.json; the recorder (root) must not."""
    real = bundles.make(["true"])
    link = tmp_path / "linked"
    link.mkdir()
    (link / "config.json").symlink_to(real / "config.json")
    cid = container_ids()
    runc("run", cid, cwd=link)
    log.wait_removed(cid)
    log.settle()
    add, _ = log.assert_one_lifecycle(cid)
    assert add.container_config is None
    assert "symlink" in add.error


def test_failed_creates_leave_nothing_behind(log, bundles, container_ids, tmp_path):
    """200 failing `runc create` calls: no event, and fds and threads are back where they were."""
    good = bundles.make(["true"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ this is not json")
    missing = tmp_path / "missing"
    log.settle(0.2)
    fds, threads = fd_count(), thread_count()
    for i in range(200):
        bundle = broken if i % 2 else missing
        res = runc("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "p.pid"), container_ids("fail"), check=False)
        assert res.returncode != 0
    # a real container afterwards proves the notifier is still working
    cid = container_ids()
    runc("run", cid, cwd=good)
    log.wait_removed(cid)
    log.settle()
    # (the recorder sees the whole host: look only at this test's containers)
    assert [e.describe() for e in log.events if e.container_id.startswith("fail-")] == []
    log.assert_one_lifecycle(cid)
    assert fd_count() == fds
    assert thread_count() == threads
    # each failed create is counted; fanotify does not read the arguments of a
    # call that ends before its messages are read (coalescing), and counts it apart
    stats = log.notifier.stats
    assert stats.failed_creates + stats.unread >= 150, stats  # the rest failed before exec finished


def test_add_watch_container_termination(log, container_ids):
    proc = subprocess.Popen(["sh", "-c", "sleep 0.3; exit 3"])
    log.notifier.add_watch_container_termination("found-elsewhere", proc.pid)
    log.wait_removed("found-elsewhere")
    proc.wait()
    (remove,) = log.of("found-elsewhere")
    assert remove.type is EventType.REMOVE
    assert remove.container_pid == proc.pid and remove.exit_code == 3


def test_add_watch_on_dead_process(log):
    proc = subprocess.Popen(["true"])
    proc.wait()
    log.notifier.add_watch_container_termination("gone", proc.pid)
    log.wait_removed("gone", timeout=3)


def test_concurrent_burst(log, bundles, container_ids):
    """40 containers from 4 threads at once: each seen exactly once, start and end."""
    b = bundles.make(["true"])
    ids = [container_ids("burst") for _ in range(40)]

    def worker(chunk):
        for cid in chunk:
            runc("run", cid, cwd=b)

    threads = [threading.Thread(target=worker, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.wait_removed(*ids, timeout=20)
    log.settle()
    for cid in ids:
        log.assert_one_lifecycle(cid)
    assert log.notifier.stats.lost == 0


def test_close_is_prompt_and_leaks_nothing(backend):
    fds, threads = fd_count(), thread_count()
    notifier = backend_class(backend)()
    start = time.monotonic()
    notifier.close()
    assert time.monotonic() - start < 1.0
    notifier.close()  # idempotent
    assert fd_count() == fds and thread_count() == threads
    assert notifier.get(timeout=0) is None
    assert list(notifier) == []


def test_callback_mode(backend, bundles, container_ids):
    got = []
    done = threading.Event()

    def callback(event):
        got.append(event)
        if event.type is EventType.REMOVE:
            done.set()

    b = bundles.make(["true"])
    cid = container_ids()
    with backend_class(backend)(callback) as notifier:
        runc("run", cid, cwd=b)
        assert done.wait(10)
        with pytest.raises(TypeError):
            iter(notifier).__next__()
    assert [e.type for e in got] == [EventType.ADD, EventType.REMOVE]


def _ctr_task_pid(containerd, cid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in containerd.ctr("task", "ls", check=False).stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid and fields[1].isdigit() and int(fields[1]) > 0:
                return int(fields[1])
        time.sleep(0.02)
    raise AssertionError(f"containerd never reported a task {cid}")


def test_containerd_ctr_run(log, containerd, rootfs, tmp_path):
    """containerd's shim drives runc (create --pid-file, start, delete)."""
    ids = [f"ctrd-{os.getpid()}-{i}" for i in range(3)]
    pids = {}
    for cid, code in zip(ids, (0, 4, 0)):
        rfs = tmp_path / cid
        subprocess.run(["cp", "-a", str(rootfs), str(rfs)], check=True)
        proc = subprocess.Popen(
            containerd.run_cmd(rfs, cid, "/bin/sh", "-c", f"sleep 0.5; exit {code}"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        pids[cid] = _ctr_task_pid(containerd, cid)
        assert proc.wait(60) == code, proc.stderr.read()
    log.wait_removed(*ids, timeout=20)
    log.settle(0.5)
    for cid, code in zip(ids, (0, 4, 0)):
        add, remove = log.assert_one_lifecycle(cid, pids[cid])
        assert add.runtime_root == containerd.runc_root
        assert add.manager == "containerd" and add.caller.startswith("containerd-shim")
        assert "--pid-file" in add.runtime_args
        assert add.container_config["process"]["args"] == ["/bin/sh", "-c", f"sleep 0.5; exit {code}"]
        assert add.bundle.endswith(f"/{containerd.namespace}/{cid}")
        assert remove.exit_code == code


def test_replaced_runc_binary_is_still_watched(backend, bundles, container_ids, tmp_path):
    """A package upgrade renames a new runc over the old one: later containers are still seen."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    runc_copy = bindir / "runc"
    shutil.copy2("/usr/sbin/runc", runc_copy)
    b = bundles.make(["true"])
    notifier = backend_class(backend)(runc_paths=(str(runc_copy),))
    log = EventLog(notifier)
    try:
        before = container_ids()
        subprocess.run([str(runc_copy), "run", before], cwd=b, check=True, capture_output=True)
        log.wait_removed(before)
        # as dpkg does: write the new file beside the old one, then rename it over
        shutil.copy2("/usr/sbin/runc", bindir / "runc.dpkg-new")
        os.rename(bindir / "runc.dpkg-new", runc_copy)
        time.sleep(0.2)
        after = container_ids()
        subprocess.run([str(runc_copy), "run", after], cwd=b, check=True, capture_output=True)
        log.wait_removed(after)
        log.settle()
        log.assert_one_lifecycle(before)
        add, _ = log.assert_one_lifecycle(after)
        assert add.runtime == str(runc_copy)
    finally:
        notifier.close()


def test_run_on_a_stopped_containers_id_is_not_a_new_container(log, bundles, container_ids):
    """`runc run X` fails while a stopped X's state.json is still there: no fake add."""
    b = bundles.make(["true"])
    cid = container_ids()
    runc("run", "-d", cid, cwd=b)
    log.wait_removed(cid)
    again = runc("run", "-d", cid, cwd=b, check=False)
    assert again.returncode != 0 and "exists" in again.stderr
    runc("delete", cid)
    log.settle(0.5)
    log.assert_one_lifecycle(cid)


def test_relative_bundle_and_pid_file_when_the_recorder_is_late(monkeypatch, bundles, container_ids, tmp_path):
    """runc chdirs into --bundle a few ms after it starts: a late reader must not
    resolve relative paths inside the bundle."""
    from runctrace.backends.fanotify import FanotifyNotifier
    from runctrace.backends.fanotify.correlator import Correlator

    original = Correlator._resolve_exec

    def late(self, pid, *args, **kwargs):
        # the recorder is behind: it gets to runc only once runc has moved into its
        # bundle (waiting for that, not for a fixed time that may outlast runc)
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{pid}/cwd").endswith("/relbundle"):
                    break
            except OSError:
                break  # gone
            time.sleep(0.0005)
        return original(self, pid, *args, **kwargs)

    monkeypatch.setattr(Correlator, "_resolve_exec", late)
    b = bundles.make(["sleep", "0.3"], name="relbundle")
    notifier = FanotifyNotifier()
    log = EventLog(notifier)
    try:
        cid = container_ids()
        runc("run", "-d", "--pid-file", "pf", "-b", "relbundle", cid, cwd=b.parent)
        pid = int((b.parent / "pf").read_text())
        log.wait_removed(cid)
        runc("delete", cid)
        log.settle()
        add, _ = log.assert_one_lifecycle(cid, pid)
        assert add.bundle == str(b) and add.error is None, add.describe()
        assert add.container_config["process"]["args"] == ["sleep", "0.3"]
    finally:
        notifier.close()


def test_a_failed_event_loop_is_reported_and_released(monkeypatch, bundles, container_ids):
    from runctrace.backends.fanotify import FanotifyNotifier

    def broken(self):
        raise RuntimeError("injected")

    # (a failure handling one message is the message's: test_total.py. This one
    # is the loop's own, between messages.)
    monkeypatch.setattr(FanotifyNotifier, "_settle", broken)
    fds, threads = fd_count(), thread_count()
    notifier = FanotifyNotifier()
    runc("run", container_ids(), cwd=bundles.make(["true"]))
    deadline = time.monotonic() + 5
    while not notifier.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notifier.finished and "injected" in notifier.failure
    assert notifier.get(timeout=0.1) is None  # returns, does not block or spin
    notifier.close()
    assert fd_count() == fds and thread_count() == threads


def _fanotify_flags(fd: int) -> int:
    """The group's fanotify_init flags, as the kernel shows them in fdinfo."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        line = next(line for line in f if line.startswith("fanotify flags:"))
    return int(line.split()[1].split(":")[1], 16)


def test_fanotify_names_runc_by_handle_where_it_can():
    """The runc group reports file handles here (no fd opened per runc exec), so the
    other tests exercise that path."""
    from runctrace import _sys
    from runctrace.backends.fanotify import FanotifyNotifier

    notifier = FanotifyNotifier()
    try:
        assert _fanotify_flags(notifier._bins.fan) & _sys.FanInit.REPORT_FID
    finally:
        notifier.close()


@pytest.mark.parametrize("refused_by", ["kernel", "filesystem"])
def test_fanotify_without_file_handles_still_sees_containers(monkeypatch, bundles, container_ids, refused_by):
    """A kernel before 5.1 refuses FAN_REPORT_FID (EINVAL); a filesystem that cannot
    encode file handles refuses the mark (EOPNOTSUPP). Either way the group falls
    back to an open fd per event: containers are still seen, and every fd is closed."""
    import errno

    from runctrace import _sys
    from runctrace.backends.fanotify import FanotifyNotifier

    real_init, real_mark = _sys.fanotify_init, _sys.fanotify_mark
    refused: list[str] = []

    def init(flags, event_f_flags):
        if flags & _sys.FanInit.REPORT_FID and refused_by == "kernel":
            refused.append("init")
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_init(flags, event_f_flags)

    def mark(fd, flags, mask, path, dirfd=_sys.AT_FDCWD):
        if _fanotify_flags(fd) & _sys.FanInit.REPORT_FID:
            refused.append("mark")
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_mark(fd, flags, mask, path, dirfd)

    monkeypatch.setattr(_sys, "fanotify_init", init)
    monkeypatch.setattr(_sys, "fanotify_mark", mark)
    fds_before = fd_count()
    notifier = FanotifyNotifier()
    log = EventLog(notifier)
    try:
        assert not _fanotify_flags(notifier._bins.fan) & _sys.FanInit.REPORT_FID
        assert refused == ["init" if refused_by == "kernel" else "mark"]  # handles were tried first
        b = bundles.make(["true"])
        ids = [container_ids() for _ in range(3)]
        runc("run", ids[0], cwd=b)
        fds = fd_count()
        for cid in ids[1:]:
            runc("run", cid, cwd=b)
        log.wait_removed(*ids)
        log.settle()
        for cid in ids:
            add, _ = log.assert_one_lifecycle(cid)
            assert add.runtime == notifier.binaries[0].path
        assert fd_count() == fds  # each event's fd of runc was closed
    finally:
        notifier.close()
    assert fd_count() == fds_before  # the refused handle group too


def test_fanotify_watches_a_replacement_that_cannot_be_named_by_handle(monkeypatch, bundles, container_ids, tmp_path):
    """The new runc file of an upgrade sits where file handles cannot be reported
    (its mark on the handle group is refused): the group is reopened to report
    fds, every binary marked anew, and containers started with the new file are
    still seen."""
    import errno

    from runctrace import _sys
    from runctrace.backends.fanotify import FanotifyNotifier

    bindir = tmp_path / "bin"
    bindir.mkdir()
    runc_copy = bindir / "runc"
    shutil.copy2("/usr/sbin/runc", runc_copy)
    b = bundles.make(["true"])
    notifier = FanotifyNotifier(runc_paths=(str(runc_copy),))
    log = EventLog(notifier)
    try:
        assert _fanotify_flags(notifier._bins.fan) & _sys.FanInit.REPORT_FID
        real_mark = _sys.fanotify_mark

        def mark(fd, flags, mask, path, dirfd=_sys.AT_FDCWD):
            if _fanotify_flags(fd) & _sys.FanInit.REPORT_FID:
                raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
            return real_mark(fd, flags, mask, path, dirfd)

        monkeypatch.setattr(_sys, "fanotify_mark", mark)
        shutil.copy2("/usr/sbin/runc", bindir / "runc.dpkg-new")
        os.rename(bindir / "runc.dpkg-new", runc_copy)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if not _fanotify_flags(notifier._bins.fan) & _sys.FanInit.REPORT_FID:
                    break
            except (FileNotFoundError, StopIteration):
                pass  # the fd was read just before the loop swapped the groups and closed it
            time.sleep(0.05)
        assert not _fanotify_flags(notifier._bins.fan) & _sys.FanInit.REPORT_FID
        cid = container_ids()
        subprocess.run([str(runc_copy), "run", cid], cwd=b, check=True, capture_output=True)
        log.wait_removed(cid)
        log.settle()
        add, _ = log.assert_one_lifecycle(cid)
        assert add.runtime == str(runc_copy)
    finally:
        notifier.close()
