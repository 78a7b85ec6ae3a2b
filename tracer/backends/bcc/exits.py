"""Containers' exits: which PIDs the kernel watches (the ``containers`` map), and
the handshake that closes the race with an init that ends first.

The tracker learns a container's init PID from user space (runc's state, its pid
file, or the kernel's own exec record) and asks for its exit (:meth:`ExitWatch.watch`).
The kernel reports the exit of every PID in ``containers`` once the process is a
zombie; the map is what makes that PID's end cross to user space at all. A PID
that cannot be put there (the map full) is polled in /proc instead, its exit
status lost.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from runctrace.backends.base import Stats, log
from runctrace.backends.bcc.records import C
from runctrace.runc.proc import mono_to_wall_ns, process_ended, read_stat, stat_alive
from runctrace.runc.tracker import Container, RuncExec, Tracker

BPF_NOEXIST, BPF_EXIST = 1, 2  # bpf(2) map update flags: insert only, update only
# An init that user space found exiting (see ExitWatch.watch) may not be a zombie
# yet; its REMOVE waits until it is (see _Ending). Polled this often, at most this
# long (the init of a PID namespace first waits for all its namespace's processes
# to die). The kernel's own exit records come when the init is a zombie already.
ENDING_POLL_S = 0.001
_ENDING_MAX_S = 5.0
# A PID the kernel could not be asked to watch (its map full: 16,384 running
# containers) is looked at this often instead. Its exit status is lost.
UNWATCHED_POLL_S = 1.0
_UNWATCHED_NOTE = "containers map full: some exits polled from /proc, their status unknown"


@dataclass
class _Ending:
    """A watched init that is exiting, not yet a zombie."""

    status: Optional[int]
    when_ns: Optional[int]
    error: Optional[str]
    start: Optional[int]
    deadline: float


class ExitWatch:
    """The ``containers`` and ``recent_exits`` maps, from user space, and the exits
    that wait for their zombie. Runs on the notifier's loop thread only.

    ``tracker`` is set by the notifier once it has made it (the tracker is made
    with :meth:`watch` as its callback).
    """

    def __init__(self, bpf: Any, lib: Any, stats: Stats) -> None:
        self.tracker: Optional[Tracker] = None
        self._stats = stats
        # The map operations call libbpf directly with reused ctypes values: BCC's
        # Table wrapper costs tens of microseconds a call.
        self._lib = lib
        watched = bpf[b"containers"]
        self._watched_fd, self._key = watched.map_fd, ct.c_uint32(0)
        self._watch_leaf, self._peek_leaf, self._exit_leaf = watched.Leaf(), watched.Leaf(), watched.Leaf()
        self._recent_exits = bpf[b"recent_exits"]
        self._starts: dict[int, Optional[int]] = {}  # watched init pid -> its start time (ticks)
        self._ending: dict[int, _Ending] = {}
        self._unwatched: dict[int, Optional[int]] = {}  # pid -> start ticks: see UNWATCHED_POLL_S
        self._unwatched_due = 0.0

    def poll_timeout(self) -> Optional[float]:
        """How long the loop may sleep: no timeout unless an exit waits for its
        zombie (or a PID is watched from user space): an idle recorder sleeps."""
        return ENDING_POLL_S if self._ending else UNWATCHED_POLL_S if self._unwatched else None

    def tick(self) -> None:
        """After every wake-up: the exits whose zombie came, the PIDs polled."""
        if self._ending:
            self.finish_endings()
        if self._unwatched and time.monotonic() >= self._unwatched_due:
            self._poll_unwatched()

    def watch(self, container: Container, expected_start: Optional[int], rexec: Optional[RuncExec]) -> None:
        """Have the kernel report the exit of ``container.pid``: the handshake.

        Insert the PID into ``containers``, *then* check that the process still
        runs. If it does, the kernel will report its exit. If it does not, its exit
        may have passed before the insert: whichever side deletes the PID from the
        map first reports the exit. The kernel, at exit, writes ``recent_exits``
        before its delete, so if we win the delete the exit status is there (for
        runc's own descendants).
        """
        pid = container.pid
        self._unwatched.pop(pid, None)  # an earlier process's, if any: the tracker ended it
        key = self._key
        key.value = pid
        # the leaf is all zeros, always: the kernel writes the entry, not this copy
        err = 0
        if self._lib.bpf_update_elem(self._watched_fd, ct.byref(key), ct.byref(self._watch_leaf), BPF_NOEXIST) < 0:
            err = ct.get_errno()
            if err == errno.EEXIST and self._stale_entry(key):
                # a dead predecessor's, whose exit was not sent yet (its parent
                # ignored SIGCHLD: sent only when its task is freed): it must not
                # end this process. (The tracker ended that container already.)
                self._lib.bpf_delete_elem(self._watched_fd, ct.byref(key))
                if self._lib.bpf_update_elem(self._watched_fd, ct.byref(key), ct.byref(self._watch_leaf),
                                             BPF_NOEXIST) < 0:
                    err = ct.get_errno()
        stat = read_stat(pid)  # after the insert: see the docstring
        # The start time names *this* process, for the zombie wait in ended().
        start = expected_start if expected_start is not None else (stat.start if stat else None)
        if err not in (0, errno.EEXIST):
            log.warning("runctrace: cannot watch PID %d in the kernel: %s; polling it", pid, os.strerror(err))
            if _UNWATCHED_NOTE not in self._stats.notes:
                self._stats.notes.append(_UNWATCHED_NOTE)
            self._unwatched[pid] = start
            return
        if stat_alive(stat, expected_start):
            self._starts[pid] = start
            return
        recent = self._recent_exit(pid, rexec)
        if recent is not None and self._leave_exit_to_kernel(key, recent, start):
            self._starts[pid] = start
            return
        if self._lib.bpf_delete_elem(self._watched_fd, ct.byref(key)) < 0:
            return  # the kernel deleted it: its CONTAINER_EXIT record is on the way
        self._starts[pid] = start
        if recent is not None and recent.flags & C["RT_F_STATUS_KNOWN"]:
            self.ended(pid, recent.status, mono_to_wall_ns(recent.exit_ns))
        else:
            self.ended(pid, None, None, error="exited before it was watched; exit status unknown")

    def _leave_exit_to_kernel(self, key: Any, recent: Any, start: Optional[int]) -> bool:
        """An init that has exited (``recent``: the kernel's record of it) and may not
        be a zombie yet. Rather than poll for the zombie, put its exit in its
        ``containers`` entry: the kernel then sends it at the parent's SIGCHLD, once
        it is one, as for any watched init. True if the kernel will.

        If the SIGCHLD passed before the entry had the exit, the kernel sent
        nothing: so the process is looked at again after the update, and a zombie
        (or a process gone) is left to the handshake's delete, whose winner reports.
        """
        leaf = self._exit_leaf
        leaf.exit_ns, leaf.status, leaf.flags = recent.exit_ns, recent.status, recent.flags
        if self._lib.bpf_update_elem(self._watched_fd, ct.byref(key), ct.byref(leaf), BPF_EXIST) < 0:
            return False  # the kernel deleted the entry already: the handshake tells
        return not process_ended(key.value, start)

    def _poll_unwatched(self) -> None:
        self._unwatched_due = time.monotonic() + UNWATCHED_POLL_S
        for pid, start in list(self._unwatched.items()):
            if process_ended(pid, start):
                del self._unwatched[pid]
                self.tracker.pid_exited(pid, None, error="its exit was not watched in the kernel "
                                        "(containers map full); exit status unknown")

    def _stale_entry(self, key: Any) -> bool:
        """Is the ``containers`` entry at ``key`` a process that has exited already?"""
        leaf = self._peek_leaf
        return self._lib.bpf_lookup_elem(self._watched_fd, ct.byref(key), ct.byref(leaf)) == 0 and leaf.exit_ns != 0

    def ended(self, pid: int, status: Optional[int], when_ns: Optional[int], error: Optional[str] = None) -> None:
        """A watched init is exiting: emit its REMOVE once it has become a zombie (or gone).

        The kernel sends the exit once it is (RT_F_ENDED), except in a rare case
        (runctrace.bpf.c, "when a watched exit is sent"); user space may find it
        exiting a moment before (watch). A consumer that runs `runc delete` on the
        REMOVE must not be told the container is still running. (The fanotify
        backend's connector message comes after that point, so both agree.)
        """
        start = self._starts.pop(pid, None)
        if process_ended(pid, start):
            self.tracker.pid_exited(pid, status, when_ns, error)
        else:
            self._ending[pid] = _Ending(status, when_ns, error, start, time.monotonic() + _ENDING_MAX_S)

    def finish_endings(self, flush: bool = False) -> None:
        now = time.monotonic()
        for pid, e in list(self._ending.items()):
            if flush or now > e.deadline or process_ended(pid, e.start):
                del self._ending[pid]
                self.tracker.pid_exited(pid, e.status, e.when_ns, e.error)

    def _recent_exit(self, pid: int, rexec: Optional[RuncExec]) -> Any:
        """How runc's descendant ``pid`` ended, if it was forked by this runc call."""
        if rexec is None or rexec.started_ns is None:
            return None  # not runc's child as far as we know: no way to tell PID reuse
        table = self._recent_exits
        try:
            leaf = table[table.Key(pid)]
        except KeyError:
            return None
        return leaf if leaf.start_ns >= rexec.started_ns else None


__all__ = ["ExitWatch"]
