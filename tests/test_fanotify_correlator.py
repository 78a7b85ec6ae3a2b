"""The fanotify backend's correlator, driven by scripted kernel messages: no root,
no runc, no sockets.

A fake host plays the kernel: processes in a fake /proc, the fanotify queue of
runc execs, and the connector's messages in batches, as the loop hands them over.
A recording tracker stands in for :class:`runctrace.runc.tracker.Tracker`: it
keeps runc calls that make a container and resolves them as the real one does
(at the init's start, or at runc's exit from runc's records), so each test reads
as the sequence of tracker calls the messages led to. The races here are the
ones real containers reach only by luck or by patching the loop.
"""

from __future__ import annotations

import errno
from types import SimpleNamespace
from typing import Optional

import pytest

from runctrace import _sys
from runctrace.backends.base import Stats
from runctrace.backends.fanotify import correlator as correlator_module
from runctrace.backends.fanotify.correlator import PENDING_EXEC_TIMEOUT_S, Correlator, ProcReaders
from runctrace.runc.args import parse_runc_args
from runctrace.runc.binaries import RUNC_INIT_COMM
from runctrace.runc.proc import ProcStat
from runctrace.runc.tracker import RuncExec

RUNC = "/usr/sbin/runc"
SHELL = 100  # the caller of every runc here
MS = 1_000_000


class RecordingTracker:
    """What the correlator tells the tracker, in order (``log``).

    Resolves a call like the real one: at ``init_started``, or at a successful
    ``runc_exited`` with the PID runc's records give (``records``: runc pid ->
    init pid), and watches the container it made through ``watch``.
    """

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.calls: dict[int, RuncExec] = {}
        self.containers: dict[int, SimpleNamespace] = {}
        self.records: dict[int, int] = {}
        self.log: list[tuple] = []
        self.watch = None

    def runc_started(self, pid, argv, cwd, runtime, *, started_ns=None, cwd_may_be_bundle=False):
        self.log.append(("runc_started", pid, argv[1], runtime))
        call = parse_runc_args(argv, cwd)
        if not call.creates_container:
            return None
        st = self.host.stat(pid)
        rexec = RuncExec(pid, call, runtime, started_ns, None, st.start if st else None)
        self.calls[pid] = rexec
        return rexec

    def init_started(self, runc_pid, init_pid, init_namespaces=None, argv=None):
        self.log.append(("init_started", runc_pid, init_pid))
        rexec = self.calls.get(runc_pid)
        if rexec is not None and not rexec.resolved:
            self._resolve(rexec, init_pid)

    def runc_exited(self, pid, status, init_pid=None):
        self.log.append(("runc_exited", pid, status))
        rexec = self.calls.pop(pid, None)
        if rexec is not None and not rexec.resolved and status == 0 and pid in self.records:
            self._resolve(rexec, self.records[pid])

    def pid_exited(self, pid, status, when_ns=None, error=None):
        container = self.containers.pop(pid, None)
        if container is None:
            return False
        self.log.append(("removed", pid, status, error))
        return True

    def _resolve(self, rexec: RuncExec, pid: int) -> None:
        rexec.resolved = True
        seen = rexec.init_seen[1] if rexec.init_seen and rexec.init_seen[0] == pid else None
        container = SimpleNamespace(pid=pid, container_id=rexec.call.container_id, seen=seen)
        self.containers[pid] = container
        self.log.append(("added", rexec.call.container_id, pid, seen))
        self.watch(container, None, rexec)

    def of(self, kind: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == kind]


class Host:
    """A fake kernel: /proc, the fanotify queue, the connector's messages, a clock."""

    def __init__(self) -> None:
        self.procs: dict[int, dict] = {}
        self.fanotify: list[int] = []  # pids that opened runc for exec, not read yet
        self.now = 1000.0  # the correlator's clock (seconds)
        self.ns = 10**12  # CLOCK_MONOTONIC of the next message
        self.ticks = 1000  # start time of the next process
        self.drains = 0
        self.resyncs = 0
        self.reads: list[int] = []  # pids whose cmdline was read
        self.stats = Stats()
        self.tracker = RecordingTracker(self)
        self.corr = Correlator(
            self.stats,
            ProcReaders(runc_exe=self.runc_exe, stat=self.stat, cmdline=self.cmdline,
                        exists=lambda pid: pid in self.procs, cwd=self.cwd, init_view=self.init_view),
            drain_runc_execs=self.drain, sole_runtime=lambda: RUNC, ask_resync=self.ask_resync,
            clock=lambda: self.now,
        )
        self.corr.tracker = self.tracker
        self.tracker.watch = self.corr.watch

    # ---- fake /proc

    def process(self, pid: int, ppid: int = SHELL, argv: Optional[list[str]] = None, exe: Optional[str] = None,
                state: str = "S", start: Optional[int] = None, cmdline_error: int = 0) -> dict:
        self.ticks += 1
        self.procs[pid] = dict(ppid=ppid, argv=argv or ["sh"], exe=exe, state=state,
                               start=self.ticks if start is None else start, cmdline_error=cmdline_error)
        return self.procs[pid]

    def gone(self, pid: int) -> None:
        self.procs.pop(pid, None)

    def stat(self, pid: int) -> Optional[ProcStat]:
        p = self.procs.get(pid)
        return ProcStat(p["state"], p["ppid"], 0, p["start"]) if p else None

    def cmdline(self, pid: int) -> bytes:
        self.reads.append(pid)
        p = self.procs.get(pid)
        if p is None:
            raise FileNotFoundError(errno.ENOENT, "gone")
        if p["cmdline_error"]:
            raise OSError(p["cmdline_error"], "unreadable")
        return b"".join(a.encode() + b"\0" for a in p["argv"])

    def runc_exe(self, pid: int) -> Optional[str]:
        p = self.procs.get(pid)
        return p["exe"] if p else None

    def cwd(self, pid: int, exec_ns: int) -> tuple[Optional[str], bool]:
        return ("/bundle" if pid in self.procs else None), False

    def init_view(self, pid: int) -> dict:
        return {"mntns": 4000 + pid, "pidns": 5000 + pid, "netns": 6000 + pid, "cgroup": f"/runc/{pid}"}

    # ---- fake fanotify and connector

    def drain(self) -> None:
        self.drains += 1
        queued, self.fanotify = self.fanotify, []
        for pid in queued:
            self.corr.runc_exec_seen(pid)

    def ask_resync(self) -> None:
        self.resyncs += 1

    def _tick(self, ms: float = 1) -> int:
        self.ns += int(ms * MS)
        return self.ns

    def exec_(self, pid: int, ms: float = 1) -> _sys.ProcEvent:
        return _sys.ProcEvent(_sys.PROC_EXEC, self._tick(ms), pid, pid)

    def exit_(self, pid: int, status: int = 0, parent: int = 0, ms: float = 1) -> _sys.ProcEvent:
        return _sys.ProcEvent(_sys.PROC_EXIT, self._tick(ms), pid, pid, status, parent)

    def named(self, pid: int, tid: Optional[int] = None, comm: bytes = RUNC_INIT_COMM) -> _sys.ProcEvent:
        return _sys.ProcEvent(_sys.PROC_COMM, self._tick(), pid if tid is None else tid, pid, comm=comm)

    def batch(self, *events: _sys.ProcEvent) -> None:
        """One batch of connector messages, handed over as the loop does."""
        fanotify_read = False
        for ev in events:
            fanotify_read = self.corr.on_message(ev, fanotify_read)

    # ---- a runc exec, start to finish

    def runc(self, pid: int, *args: str, exe: str = RUNC, **kw) -> None:
        """``pid`` execs runc with ``args``: its fanotify event is queued (its EXEC
        is for the test to send)."""
        self.process(pid, argv=["runc", *args], exe=exe, **kw)
        self.fanotify.append(pid)

    def init(self, pid: int, runc_pid: int, **kw) -> None:
        """runc ``runc_pid``'s container init (CLONE_PARENT: runc is its parent)."""
        self.process(pid, ppid=runc_pid, argv=["runc", "init"], exe="runc", **kw)


@pytest.fixture
def host() -> Host:
    return Host()


R, I, P = 200, 300, 250  # runc, its container's init, its `runc init` parent


# ------------------------------------------------------------------ the plain paths


def test_a_run_is_resolved_when_its_init_execs(host):
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I), host.exec_(I))
    host.batch(host.exit_(I, 3 << 8, parent=R), host.exit_(R, 3 << 8))
    view = host.init_view(I)
    assert host.tracker.log == [
        ("runc_started", R, "run", RUNC),
        ("init_started", R, I),
        ("added", "c1", I, view),
        ("removed", I, 3 << 8, None),
        ("runc_exited", R, 3 << 8),
    ]
    assert host.stats.missed == host.stats.unread == 0 and host.resyncs == 0


def test_the_init_is_seen_at_its_rename(host):
    """Its namespaces and cgroup are read at the rename, while it surely lives."""
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I))
    assert host.tracker.calls[R].init_seen == (I, host.init_view(I))


def test_a_create_is_left_to_runcs_records_and_its_init_at_start_is_ignored(host):
    host.runc(R, "create", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I))
    assert host.tracker.calls[R].init_seen is None  # only a run is resolved at the init
    host.tracker.records[R] = I
    host.batch(host.exit_(R, 0))
    host.batch(host.exec_(I))  # `runc start`, long after: nothing in flight
    assert [e[0] for e in host.tracker.log] == ["runc_started", "runc_exited", "added"]


def test_the_fanotify_queue_is_read_once_a_batch_at_its_first_exec(host):
    host.process(11)
    host.process(12)
    host.runc(R, "run", "c1")
    host.batch(host.exec_(11), host.exec_(12), host.exec_(R))
    assert host.drains == 1 and host.tracker.of("runc_started")
    host.batch(host.exit_(11))  # no EXEC, no read
    assert host.drains == 1
    host.init(I, R)
    host.batch(host.named(I), host.exec_(I))  # an init's exec is not runc's
    assert host.drains == 1 and host.tracker.of("init_started")


def test_renames_of_threads_and_to_other_names_are_ignored(host):
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I, tid=I + 1), host.named(I, comm=b"runc:[1:CHILD]"), host.exec_(I))
    assert not host.tracker.of("init_started")


# ------------------------------------------------------------ runc's exec, in either order


def test_an_exec_read_before_its_fanotify_event_is_matched_when_the_event_comes(host):
    host.process(R, argv=["runc", "run", "c1"], exe=RUNC)
    host.batch(host.exec_(R))  # its event was not queued yet (or was lost)
    assert not host.tracker.log
    host.fanotify.append(R)
    host.process(11)
    host.batch(host.exec_(11))
    assert host.tracker.of("runc_started") == [("runc_started", R, "run", RUNC)]


def test_an_event_whose_exec_is_in_a_later_batch_waits_for_it(host):
    host.process(11)
    host.runc(R, "run", "c1")
    host.batch(host.exec_(11))  # reads the queue: runc's exec is not done yet
    assert R in host.corr.pending_exec and not host.tracker.log
    host.batch(host.exec_(R))
    assert host.tracker.of("runc_started") and not host.corr.pending_exec


def test_an_event_whose_exec_never_comes_is_a_missed_call(host):
    host.process(11)
    host.runc(R, "run", "c1")
    host.batch(host.exec_(11))
    host.corr.expire_pending()
    assert host.stats.missed == 0
    host.now += PENDING_EXEC_TIMEOUT_S + 1
    host.corr.expire_pending()
    assert host.stats.missed == 1 and host.resyncs == 1 and not host.corr.pending_exec


def test_a_process_that_exits_before_its_runc_exec_completes_is_counted(host):
    host.process(11)
    host.runc(R, "run", "c1")
    host.batch(host.exec_(11), host.exit_(R, 1 << 8))  # the exec failed
    assert host.stats.missed == 1 and host.resyncs == 0 and not host.corr.pending_exec


def test_a_wrappers_earlier_exec_is_not_taken_for_runcs(host):
    host.process(R, argv=["wrapper.sh"])
    host.batch(host.exec_(R))
    host.runc(R, "run", "c1")
    runc_exec = host.exec_(R, ms=20)
    host.batch(runc_exec)
    assert host.tracker.calls[R].started_ns == runc_exec.timestamp_ns


def test_runcs_open_read_with_its_wrappers_exec_waits_for_runcs_own(host):
    """setpriv ... runc run: runc's open was queued, its exec under way, when the
    batch holding the wrapper's EXEC (same PID) was read."""
    host.process(R, argv=["setpriv", "--reuid=65534", "runc", "run", "c1"], exe=None)
    wrapper_exec = host.exec_(R)
    host.fanotify.append(R)
    host.batch(wrapper_exec)
    assert not host.tracker.log and host.reads == []  # the wrapper's arguments are not runc's
    host.process(R, argv=["runc", "run", "c1"], exe=RUNC)  # runc's exec completes
    runc_exec = host.exec_(R)
    host.batch(runc_exec)
    assert host.tracker.log == [("runc_started", R, "run", RUNC)]
    assert host.tracker.calls[R].started_ns == runc_exec.timestamp_ns


def test_a_runc_that_is_a_zombie_at_its_exec_is_read_at_once(host):
    """runc gone (a zombie: no exe to look at) by the time its EXEC is handled:
    its call is unread now, not held pending until its exit calls it missed."""
    host.runc(R, "state", "c1", exe=None, state="Z", cmdline_error=errno.ESRCH)
    host.batch(host.exec_(R))
    host.batch(host.exit_(R, 1 << 8))
    assert host.stats.unread == 1 and host.stats.missed == 0


def test_runc_inits_second_exec_of_itself_is_not_read(host):
    host.runc(P, "init", exe="runc")
    host.batch(host.exec_(P))
    host.fanotify.append(P)  # runc 1.1's init re-execs its sealed copy
    host.batch(host.exec_(P))
    assert host.reads == [P] and not host.tracker.log
    host.fanotify.append(P)  # a later runc exec of the same process is read
    host.batch(host.exec_(P))
    assert host.reads == [P, P]


def test_a_runc_init_is_forgotten_at_its_exit(host):
    host.runc(P, "init", exe="runc")
    host.batch(host.exec_(P), host.exit_(P))
    host.runc(P, "state", "c1")  # a new process on the same PID
    host.batch(host.exec_(P))
    assert host.reads == [P, P]


def test_an_exec_that_failed_after_the_open_is_not_runc(host):
    """fanotify saw the open; the exec failed and the process ran something else."""
    host.runc(R, "run", "c1", exe=None)
    host.batch(host.exec_(R))
    assert not host.tracker.log


def test_a_runc_gone_before_its_binary_was_looked_at_is_named_by_the_one_binary(host):
    host.runc(R, "run", "c1", exe=RUNC)
    host.procs[R]["exe"] = None  # /proc/PID/exe unreadable: gone between the reads
    host.procs[R]["state"] = "Z"
    real_exists = host.corr._exists
    host.corr._exists = lambda pid: False
    host.batch(host.exec_(R))
    host.corr._exists = real_exists
    assert host.tracker.of("runc_started") == [("runc_started", R, "run", RUNC)]


# ------------------------------------------------------------ runc calls gone unread


def test_a_short_call_gone_unread_is_counted_and_costs_no_look_on_disk(host):
    host.runc(R, "state", "c1")
    host.gone(R)
    host.batch(host.exec_(R), host.exit_(R, 1 << 8))
    assert host.stats.unread == 1 and host.stats.missed == 0 and host.resyncs == 0


def test_a_call_gone_unread_while_an_untied_init_named_itself_is_missed(host):
    """A run gone unread made a container: its init named itself with no known runc."""
    host.runc(R, "run", "-d", "c1")
    host.gone(R)
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I), host.exit_(R, 0))
    assert host.stats.missed == 1 and host.resyncs == 1 and host.stats.unread == 0


def test_a_call_gone_unread_that_lived_long_is_missed(host):
    """A restore's init keeps its old name: no rename tells, but its runc lived long."""
    host.runc(R, "restore", "c1")
    host.gone(R)
    host.batch(host.exec_(R))
    host.batch(host.exit_(R, 0, ms=correlator_module._UNREAD_SHORT_NS / MS + 1))
    assert host.stats.missed == 1 and host.resyncs == 1


def test_a_call_whose_arguments_cannot_be_read_is_looked_for_on_disk(host):
    host.runc(R, "run", "c1", cmdline_error=errno.EMFILE)
    host.batch(host.exec_(R), host.exit_(R, 0))
    assert host.stats.missed == 1 and host.resyncs == 1


def test_unread_calls_beyond_the_cache_are_missed_at_once(host, monkeypatch):
    monkeypatch.setattr(correlator_module, "_RECENT", 2)
    for pid in (R, R + 1, R + 2):
        host.runc(pid, "state", "x")
        host.gone(pid)
    host.batch(host.exec_(R), host.exec_(R + 1), host.exec_(R + 2))
    assert host.stats.missed == 1 and host.resyncs == 1  # the oldest: its exit will not be looked at


def test_a_connector_overflow_forgets_unread_calls_and_runc_inits(host):
    host.runc(R, "state", "c1")
    host.gone(R)
    host.runc(P, "init", exe="runc")
    host.batch(host.exec_(R), host.exec_(P))
    host.corr.connector_overflowed()
    host.batch(host.exit_(R))
    assert host.stats.unread == 0 and host.stats.missed == 0  # the loop's resync covers it
    host.fanotify.append(P)
    host.batch(host.exec_(P))
    assert host.reads.count(P) == 2  # read again: it may be a new process


# ------------------------------------------------------------ the init, in every order


def test_an_init_gone_before_its_rename_was_read_is_placed_by_its_exit(host):
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.batch(host.named(I), host.exec_(I))  # /proc/I is gone: the loop is behind
    assert not host.tracker.of("init_started")
    host.batch(host.exit_(I, 3 << 8, parent=R), host.exit_(R, 3 << 8))
    assert host.tracker.log[1:] == [
        ("init_started", R, I),
        ("added", "c1", I, None),
        ("removed", I, 3 << 8, None),  # its ADD first
        ("runc_exited", R, 3 << 8),
    ]
    assert host.stats.failed_creates == 0 and host.stats.missed == 0


def test_an_unplaced_init_whose_exit_names_no_parent_is_left_to_runcs_exit(host):
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.batch(host.named(I), host.exec_(I), host.exit_(I, 0))
    assert host.stats.missed == 1 and not host.tracker.of("init_started")


def test_an_inits_exec_read_before_its_runcs_fanotify_event(host):
    host.process(R, argv=["runc", "run", "c1"], exe=RUNC)
    host.batch(host.exec_(R))  # runc's event not queued yet
    host.init(I, R)
    host.fanotify.append(R)
    host.batch(host.named(I), host.exec_(I))  # an init's exec does not read the queue...
    # ...but an init whose runc's exec was seen without its event does, first
    assert [e[0] for e in host.tracker.log] == ["runc_started", "init_started", "added"]


def test_an_init_is_not_given_to_a_newer_runc_on_its_parents_reused_pid(host):
    host.init(I, R, start=500)
    host.runc(R, "run", "c2", start=600)  # the init's runc is gone; a new one has its PID
    host.batch(host.exec_(R))
    host.batch(host.named(I), host.exec_(I))
    assert not host.tracker.of("init_started") and R in host.tracker.calls


def test_an_init_of_runc_exec_is_not_resolved(host):
    host.runc(R, "exec", "c1", "sh")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I), host.exec_(I))
    assert host.tracker.log == [] and host.reads == [R]  # read, and not a call that makes one


def test_runcs_exit_before_its_inits_exec_keeps_what_the_rename_showed(host):
    """`runc run -d`: runc exits before its init's exec is read, and the container
    may be gone by then: what identifies it was read at the rename."""
    host.runc(R, "run", "-d", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.tracker.records[R] = I
    host.batch(host.named(I), host.exit_(R, 0))
    host.gone(I)
    host.batch(host.exec_(I))
    assert ("added", "c1", I, host.init_view(I)) in host.tracker.log
    assert not host.tracker.of("init_started")


# ------------------------------------------------------------ exits of watched inits


def test_a_container_that_ended_before_it_was_watched_gets_its_exit_status(host):
    host.runc(R, "run", "-d", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.tracker.records[R] = I
    host.batch(host.named(I))
    host.gone(I)
    host.batch(host.exit_(I, 7 << 8, parent=R), host.exit_(R, 0))
    assert host.corr.unsure == {I}
    host.corr.settle_unsure()
    assert host.tracker.log[-1] == ("removed", I, 7 << 8, None) and not host.corr.unsure


def test_a_container_that_ended_unseen_is_ended_without_a_status(host):
    host.runc(R, "create", "c1")
    host.batch(host.exec_(R))
    host.tracker.records[R] = I  # its init is gone, and no EXIT of it was read
    host.batch(host.exit_(R, 0))
    host.corr.settle_unsure()
    (removed,) = host.tracker.of("removed")
    assert removed[2] is None and "exit status unknown" in removed[3]


def test_a_zombie_init_waits_for_its_exit_message(host):
    host.runc(R, "create", "c1")
    host.batch(host.exec_(R))
    host.init(I, R, state="Z")
    host.tracker.records[R] = I
    host.batch(host.exit_(R, 0))
    host.corr.settle_unsure()
    assert not host.tracker.of("removed") and I in host.tracker.containers
    host.batch(host.exit_(I, 9))
    assert host.tracker.of("removed") == [("removed", I, 9, None)]


def test_an_init_watched_at_its_own_exec_is_not_looked_at(host):
    """Its EXIT, if it has exited already, is queued behind the EXEC being handled."""
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I))
    host.gone(I)
    host.batch(host.exec_(I))
    assert not host.corr.unsure and I in host.tracker.containers


def test_a_watched_pid_reused_by_another_process_is_unsure(host):
    host.process(I, start=77)
    container = SimpleNamespace(pid=I)
    host.corr.watch(container, 77, None)
    assert not host.corr.unsure
    host.corr.watch(container, 76, None)
    assert host.corr.unsure == {I}


def test_a_watched_inits_exit_comes_before_its_runcs(host):
    """A foreground run: the init's exit ends the container, then runc's ends the call."""
    host.runc(R, "run", "c1")
    host.batch(host.exec_(R))
    host.init(I, R)
    host.batch(host.named(I), host.exec_(I))
    host.batch(host.exit_(I, 0, parent=R))
    assert R in host.tracker.calls
    host.batch(host.exit_(R, 0))
    assert [e[0] for e in host.tracker.log[-2:]] == ["removed", "runc_exited"] and not host.tracker.calls


def test_a_caches_oldest_entries_go_first(host, monkeypatch):
    monkeypatch.setattr(correlator_module, "_RECENT", 3)
    for pid in range(11, 16):
        host.process(pid)
        host.batch(host.exec_(pid))
    assert list(host.corr._recent_exec) == [13, 14, 15]
