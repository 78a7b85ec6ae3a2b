"""From the kernel's word about processes to the tracker's calls: the fanotify
backend's correlation, with no fd of its own.

What it is given
----------------
* each decoded process-events message (:class:`runctrace._sys.ProcEvent`): a
  process's EXEC done, its EXIT with its wait status (and, on kernels that say,
  its parent), and the COMM of a runc init naming itself ``runc:[2:INIT]``;
* "this process is exec'ing a runc binary" (:meth:`Correlator.runc_exec_seen`),
  from the fanotify group of :mod:`.binwatch`;
* small functions for what it reads from /proc (:class:`ProcReaders`): a
  process's stat, its command line, which watched binary it runs, its working
  directory, its namespaces and cgroup. The real ones by default; tests script them.

What it makes of it: :class:`~runctrace.runc.tracker.Tracker` calls
(``runc_started``, ``init_started``, ``runc_exited``, ``pid_exited``). The loop
(:mod:`.notifier`) calls :meth:`Correlator.on_message` once per message, and
reads the fanotify queue when the correlator asks for it (``drain_runc_execs``).

How a container is followed
---------------------------
1. **runc's exec.** fanotify reports the *open* of runc for exec, while the exec
   is under way: ``/proc/PID/cmdline`` may still show the caller's. The
   connector's EXEC says the exec is done; runc's argv is read then. fanotify
   queues its event before the exec completes, so when the first EXEC of a batch
   of messages is handled, the queue holds the event of every exec whose EXEC is
   in that batch (the batch was received after they were sent): the queue is
   read there, once a batch, and never waits for a wake-up of its own.
2. **The container's init.** runc's init renames itself ``runc:[2:INIT]``. Its
   parent is read at the rename: it is the runc that made it (runc clones it with
   ``CLONE_PARENT``). Its next EXEC is the container's program starting: a
   `runc run` is resolved there, with the PID (``init_started``). Its namespaces
   and cgroup are read at the rename too: they are final by then (runc's first two
   stages set them up before this one is made), and a container that ends at once
   has often ended by the time its EXEC is read (messages are held while coalescing).
3. **Exits.** Every EXIT goes to the tracker (``pid_exited``: a watched
   container's init ending), and to ``runc_exited`` for a runc call in flight.

The races, and what each piece of state is for
----------------------------------------------
* *An EXEC read before its fanotify event* (the event was not queued yet when the
  batch's queue read happened, or a queue overflow lost it): the EXEC's time is
  kept in ``_recent_exec``; when the fanotify event comes, the process is checked
  to run runc and resolved at once.
* *A fanotify event whose EXEC has not come* (it is in a later batch, or the exec
  failed): ``_pending_exec``, resolved at that EXEC; one that never comes within
  ``PENDING_EXEC_TIMEOUT_S`` counts as a missed call (a look on disk).
* *A wrapper that exec'd runc*: its earlier EXEC must not be matched to runc's
  fanotify event, so each EXEC forgets the process's earlier one.
* *runc init re-exec'ing itself* (runc 1.1 execs a sealed memfd copy): the
  process read as `runc init` (``_runc_inits``) needs no second read.
* *An exec that fails after the open* (E2BIG, ...): the process may exec
  something else, whose argv is not runc's; a call that makes a container is
  resolved only if the process runs a watched runc binary (or is gone).
* *A runc gone before its argv was read* (a short call whose messages were held
  while coalescing, or the loop fell behind): ``_unread`` keeps its exec time.
  A call that makes a container has its init name itself before runc exits, so
  at runc's exit: if an init named itself that no runc call we read had made
  (``_untied_init_ns``), or runc lived longer than a short call
  (``_UNREAD_SHORT_NS``: a restore's init keeps its checkpointed name), it may
  have made a container, and runc's state on disk is looked at (``ask_resync``);
  otherwise it is counted in ``stats.unread`` and costs nothing more.
* *An init gone before its rename was read* (the loop far behind): its stat is
  unreadable, so ``_inits`` holds None for it; at its EXEC it goes to
  ``_unplaced``, and its EXIT names its parent, which resolves the call.
* *An init's EXEC read before its runc's fanotify event*: the runc's own EXEC is
  in ``_recent_exec``, so the queue is read before the init is placed.
* *A PID reused*: a runc that started after the init it is matched with is a new
  process on an old PID, not the init's maker.
* *runc's exit read before its init's EXEC* (`runc run -d`): the tracker resolves
  the call at runc's exit, with what the rename showed (``RuncExec.init_seen``).
* *A container gone before it was watched*: :meth:`watch` finds its init dead,
  and :meth:`settle_unsure` takes its exit status from ``_recent_exit`` once the
  wake-up's queued messages are read (the loop's ``_settle``).
* *A connector overflow*: the runc inits and unread calls are forgotten (their
  exits may be among the lost); the loop looks at disk.

Every cache is bounded (``_RECENT`` entries): a host that starts more than that
between an event and its match has bigger problems, and an entry forgotten
becomes a missed call, never a wrong container.
"""

from __future__ import annotations

import collections
import errno
import os
import time
from typing import Callable, NamedTuple, Optional

from runctrace import _sys
from runctrace.backends.base import Stats
from runctrace.runc.args import parse_runc_args
from runctrace.runc.binaries import RUNC_INIT_COMM
from runctrace.runc.containers import Container
from runctrace.runc.proc import ProcStat, cgroup_of, mono_to_wall_ns, namespaces, read_proc, read_stat, runc_cwd
from runctrace.runc.tracker import RuncExec, Tracker

# Bounded caches: sized for bursts far beyond what one host starts per second.
_RECENT = 4096
# A runc call gone unread that lived longer than this was no state, delete or kill,
# nor a create that failed at once: it may have made a container even with no
# init naming itself (a restore: CRIU gives the process back its old name).
_UNREAD_SHORT_NS = 50_000_000
PENDING_EXEC_TIMEOUT_S = 5.0

_EXEC, _EXIT, _COMM = _sys.PROC_EXEC, _sys.PROC_EXIT, _sys.PROC_COMM


def _cmdline(pid: int) -> bytes:
    return read_proc(f"/proc/{pid}/cmdline")


def _exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _init_view(pid: int) -> dict:
    return {**namespaces(pid), "cgroup": cgroup_of(pid)}


class ProcReaders(NamedTuple):
    """What the correlator reads from /proc, as functions (fakes in tests)."""

    runc_exe: Callable[[int], Optional[str]]  # the watched runc binary PID runs, or None
    stat: Callable[[int], Optional[ProcStat]] = read_stat  # None if gone
    cmdline: Callable[[int], bytes] = _cmdline  # raw; raises OSError
    exists: Callable[[int], bool] = _exists
    cwd: Callable[[int, int], tuple[Optional[str], bool]] = runc_cwd  # (cwd, may be the bundle)
    init_view: Callable[[int], dict] = _init_view  # namespaces and "cgroup"


def _running(st: Optional[ProcStat]) -> bool:
    """A process that exists and has not exited (a zombie is gone, for us)."""
    return st is not None and st.state not in ("Z", "X", "x")


class Correlator:
    """Turns connector messages and fanotify's runc execs into tracker calls.

    ``tracker`` is set by the owner after construction (the tracker takes
    :meth:`watch`). ``drain_runc_execs()`` hands every queued fanotify event to
    :meth:`runc_exec_seen`; ``sole_runtime()`` names the runtime of a runc gone
    before its binary was looked at; ``ask_resync()`` asks the loop to look at
    runc's state on disk once this wake-up's messages are handled.
    """

    def __init__(
        self, stats: Stats, proc: ProcReaders, *, drain_runc_execs: Callable[[], None],
        sole_runtime: Callable[[], str], ask_resync: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker: Tracker = None  # type: ignore[assignment]
        self.stats = stats
        self._drain = drain_runc_execs
        self._sole_runtime = sole_runtime
        self._ask_resync = ask_resync
        self._clock = clock
        self._runc_exe, self._stat, self._cmdline = proc.runc_exe, proc.stat, proc.cmdline
        self._exists, self._cwd, self._init_view = proc.exists, proc.cwd, proc.init_view
        self.pending_exec: dict[int, float] = {}  # pid -> clock() when its runc exec was seen; exec not done yet
        self.unsure: set[int] = set()  # watched inits that looked gone: see settle_unsure
        # pid -> CLOCK_MONOTONIC ns of its last exec, for any process on the host
        # whose exec was not matched to a fanotify event (yet)
        self._recent_exec: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._recent_exit: collections.OrderedDict[int, int] = collections.OrderedDict()
        # runc inits that named themselves and have not exec'd yet: pid -> (their
        # runc's pid, their start time), or None if gone before the name was read
        self._inits: collections.OrderedDict[int, Optional[tuple[int, int]]] = collections.OrderedDict()
        # inits that exec'd their program while their runc was still unknown
        self._unplaced: collections.OrderedDict[int, None] = collections.OrderedDict()
        # runc processes gone before their arguments were read: pid -> exec time
        # (CLOCK_MONOTONIC ns). Their exits decide whether that matters (_on_exit).
        self._unread: collections.OrderedDict[int, int] = collections.OrderedDict()
        # when the last runc init named itself that no runc call we read had made
        self._untied_init_ns = 0
        # `runc init` processes (runc:[0:PARENT]), until their next runc exec or
        # their exit: that exec (its sealed copy of runc) needs no read
        self._runc_inits: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._execing_init = 0  # the init whose exec is being handled: see watch

    # ------------------------------------------------------------ what the loop feeds

    def on_message(self, ev: "_sys.ProcEvent", fanotify_read: bool) -> bool:
        """One connector message. ``fanotify_read``: whether the fanotify queue was
        read in this batch already; returns it, updated (module doc, 1.)."""
        what = ev.what
        if what == _EXEC:
            # an earlier exec of the same process (a wrapper that exec'd
            # runc) must not be matched to this exec's fanotify event
            self._recent_exec.pop(ev.tgid, None)
            if ev.tgid in self._inits:
                pass  # a runc init starting its container's program, not runc
            elif not fanotify_read:
                # this exec's fanotify event, if it was runc's, is queued by now
                self._drain()
                fanotify_read = True
            self._on_exec(ev.tgid, ev.timestamp_ns)
        elif what == _EXIT:  # of whole processes: threads are filtered out
            self._on_exit(ev.tgid, ev.exit_status, ev.timestamp_ns, ev.parent_tgid)
        elif what == _COMM and ev.comm == RUNC_INIT_COMM and ev.pid == ev.tgid:
            self._on_init_named(ev.tgid, ev.timestamp_ns)
        return fanotify_read

    def runc_exec_seen(self, pid: int) -> None:
        """fanotify: ``pid`` opened a runc binary for exec."""
        if pid in self._runc_inits:
            del self._runc_inits[pid]  # it does so once: a later runc exec is read
            return  # `runc init` exec'ing its own copy: still `runc init`
        # If the connector already reported this pid's exec, and the process now
        # runs runc, the arguments are readable; otherwise wait for its EXEC.
        exec_ns = self._recent_exec.get(pid)
        if exec_ns is not None:
            runtime = self._runc_exe(pid)
            if runtime is not None:
                del self._recent_exec[pid]
                self._resolve_exec(pid, runtime, exec_ns)
                return
        self.pending_exec[pid] = self._clock()

    def connector_overflowed(self) -> None:
        """The kernel dropped connector messages: forget the runc inits and the
        unread calls, whose exits may be among them (the loop looks at disk)."""
        self._runc_inits.clear()
        self._unread.clear()

    def expire_pending(self) -> None:
        """A runc exec whose EXEC never came (within PENDING_EXEC_TIMEOUT_S) is a
        missed call."""
        deadline = self._clock() - PENDING_EXEC_TIMEOUT_S
        for pid, when in list(self.pending_exec.items()):
            if when < deadline:
                del self.pending_exec[pid]
                self._missed_call()

    # ------------------------------------------------------------------- messages

    def _on_init_named(self, pid: int, when_ns: int) -> None:
        """A runc init named itself: remember its runc, for when it execs its program.

        Its parent is read now: it is normally alive (it has more setup to do before
        its exec), and its parent is the runc that made it (CLONE_PARENT). One small
        read per container; the init of a `runc exec` or of a `create` shows up
        here too, and is dropped when it execs (no unresolved run is its parent).
        """
        st = self._stat(pid)
        rexec = self.tracker.calls.get(st.ppid) if st is not None else None
        if rexec is None:
            # not made by a create or run whose arguments were read: perhaps by
            # one gone unread (_on_exit)
            self._untied_init_ns = max(self._untied_init_ns, when_ns)
        if st is None:
            self._inits[pid] = None  # gone already (this loop is behind): its exit names its parent
        else:
            if rexec is not None and rexec.call.command == "run":
                # A `run` is resolved at this init's exec (_init_execd), or at its
                # runc's exit if that comes first; either may come after the
                # container ended, so what identifies it is read now. Other inits
                # (`runc exec`'s, a create's) are not resolved there.
                rexec.init_seen = (pid, self._init_view(pid))
            self._inits[pid] = (st.ppid, st.start)
        if len(self._inits) > _RECENT:
            self._inits.popitem(last=False)

    def _on_exec(self, pid: int, exec_ns: int) -> None:
        if pid in self._inits:  # a runc init: the container's program is starting
            named = self._inits.pop(pid)
            if named is None:
                self._unplaced[pid] = None
                if len(self._unplaced) > _RECENT:
                    self._unplaced.popitem(last=False)
            else:
                self._execing_init = pid
                try:
                    self._init_execd(named[0], pid, named[1])
                finally:
                    self._execing_init = 0
            return
        if pid in self.pending_exec:
            # A runc open is waiting for its exec. This EXEC may be the one before
            # it, of the same process: a wrapper that execs runc (setpriv, `exec
            # runc` in a script) whose own EXEC was read in the batch that found
            # runc's open, with runc's exec still under way. Until the process
            # runs runc, its arguments are the wrapper's: wait for the next EXEC
            # (or its exit, or the pending timeout).
            runtime = self._runc_exe(pid)
            if runtime is None and _running(self._stat(pid)):
                self._recent_exec[pid] = exec_ns
                return  # (a zombie has no exe to look at: it is runc's exit that waits)
            del self.pending_exec[pid]
            self._resolve_exec(pid, runtime, exec_ns)
            return
        self._recent_exec[pid] = exec_ns
        if len(self._recent_exec) > _RECENT:
            self._recent_exec.popitem(last=False)

    def _init_execd(self, runc_pid: int, init_pid: int, init_start: Optional[int]) -> None:
        """``init_pid``, made by ``runc_pid``, started its program: a `runc run` is resolved."""
        if runc_pid not in self.tracker.calls and runc_pid in self._recent_exec:
            # its runc's exec was seen and its fanotify event was not: read the
            # queue now (after an overflow, its event may be queued still)
            self._drain()
        rexec = self.tracker.calls.get(runc_pid)
        if rexec is None:
            return  # a `runc exec`, or a create's init at `runc start`: nothing in flight
        if init_start is not None and rexec.start_ticks is not None and rexec.start_ticks > init_start:
            return  # that runc started after this init: a new runc on a reused PID
        self.tracker.init_started(runc_pid, init_pid)

    def _on_exit(self, pid: int, status: int, mono_ns: int, parent: int = 0) -> None:
        self._recent_exit[pid] = status
        if len(self._recent_exit) > _RECENT:
            self._recent_exit.popitem(last=False)
        self._recent_exec.pop(pid, None)
        self._runc_inits.pop(pid, None)
        self._inits.pop(pid, None)  # an init that never exec'd (its create failed, ...)
        if pid in self._unplaced:
            # an init that started its program and ended before this loop knew its
            # runc: the exit message names the parent. Resolved first, so that the
            # REMOVE below follows its ADD.
            del self._unplaced[pid]
            if parent:
                self._init_execd(parent, pid, None)
            else:
                self.stats.missed += 1  # a kernel that does not say: runc's exit will tell
        if self.pending_exec.pop(pid, None) is not None:
            self.stats.missed += 1  # it exited before its exec completed (failed exec)
        exec_ns = self._unread.pop(pid, None)
        if exec_ns is not None:
            if self._untied_init_ns >= exec_ns or mono_ns - exec_ns > _UNREAD_SHORT_NS:
                # a runc gone unread, while an init that no runc we read had made
                # named itself, or that ran too long for a short call: it may have
                # made a container. Look on disk once this wake-up is done (a
                # container it made and that still runs is there).
                self._missed_call()
            else:
                self.stats.unread += 1
        self.tracker.pid_exited(pid, status, mono_to_wall_ns(mono_ns))
        if pid in self.tracker.calls:
            self.tracker.runc_exited(pid, status)

    def _resolve_exec(self, pid: int, runtime: Optional[str], exec_ns: int) -> None:
        """runc's exec is done: read its arguments. ``exec_ns``: when (CLOCK_MONOTONIC).

        ``runtime``: the runc binary the process was seen running, or None if not
        looked at yet. Then it is looked at here, for a call that makes a container:
        fanotify reports the open, and an exec can still fail after it (E2BIG, ...);
        the process may then exec something else, whose arguments are not runc's.
        """
        try:
            raw = self._cmdline(pid)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ESRCH):
                # not gone but unreadable (EMFILE, ENOMEM...): whatever it makes
                # is on disk once it exits, and its exit looks there (time 0)
                self._unread[pid] = 0
                return
            raw = b""
        argv = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] if raw else []
        if not argv:
            # runc exited before we could read its arguments: its exit tells
            # whether it may have made a container (_on_exit)
            self._unread[pid] = exec_ns
            if len(self._unread) > _RECENT:
                self._unread.popitem(last=False)
                self._missed_call()  # its exit will not be looked at
            return
        call = parse_runc_args(argv, None)
        if not call.creates_container:
            # `runc init`, state, delete, start...: nothing to resolve, so nothing
            # to check or read. Most runc execs end here.
            if call.command == "init":
                self._runc_inits[pid] = None
                if len(self._runc_inits) > _RECENT:
                    self._runc_inits.popitem(last=False)
            return
        if runtime is None:
            runtime = self._runc_exe(pid)
            if runtime is None:
                if self._exists(pid):
                    return  # that runc exec failed after the open: the process runs something else
                runtime = self._sole_runtime()  # gone already: its arguments were runc's
        cwd, late = self._cwd(pid, exec_ns)
        self.tracker.runc_started(pid, argv, cwd, runtime, started_ns=exec_ns, cwd_may_be_bundle=late)

    def _missed_call(self) -> None:
        """A runc call whose arguments were not read may have made a container:
        count it, and look at runc's state on disk after this wake-up."""
        self.stats.missed += 1
        self._ask_resync()

    # ------------------------------------------------------------ exits of watched inits

    def watch(self, container: Container, expected_start: Optional[int], rexec: Optional[RuncExec]) -> None:
        """The tracker's ``watch``: the connector reports every exit, so just make
        sure this one has not passed.

        Called right after the tracker registered ``container``. Nothing to check
        when that came from its init's EXEC message, being handled now: its EXIT,
        if it has exited already, is queued behind that message. Otherwise, if its
        init looks gone, its EXIT is in the recent-exit cache or still queued:
        :meth:`settle_unsure` decides once the loop has read this wake-up's
        messages. (Not here: reading the socket from inside its own handler would
        recurse once per queued container, and a backlog of hundreds would
        overflow the stack.)
        """
        if container.pid == self._execing_init:
            return
        stat = self._stat(container.pid)
        if stat is not None and stat.state not in ("Z", "X", "x") and (
            expected_start is None or stat.start == expected_start
        ):
            return  # running (or exiting right now: its EXIT message is on the way)
        self.unsure.add(container.pid)

    def settle_unsure(self) -> None:
        """End the watched inits that looked gone, now that the queued messages are
        read: with their status if their EXIT was seen, else with an error."""
        for pid in list(self.unsure):
            self.unsure.discard(pid)
            if pid not in self.tracker.containers:
                continue  # its EXIT was among the queued messages
            status = self._recent_exit.get(pid)
            if status is None:
                stat = self._stat(pid)
                if stat is not None and stat.state == "Z":
                    # exit_notify() has run but the connector message may not be
                    # sent yet: it will come, and end the container then
                    continue
            error = None if status is not None else "exited before it was watched; exit status unknown"
            self.tracker.pid_exited(pid, status, error=error)
