"""BccNotifier: the loop around the ring buffer, and the handoff of each kernel
record to the tracker that the fanotify backend shares. How the parts fit: the
package doc (:mod:`runctrace.backends.bcc`)."""

from __future__ import annotations

import collections
import ctypes as ct
import os
import select
import threading
from typing import Any, Optional

from runctrace.backends.base import Callback, LoopNotifier, Stats, Support, log
from runctrace.backends.bcc import program
from runctrace.backends.bcc.exits import ExitWatch
from runctrace.backends.bcc.inodes import BinaryDirs, RuncFiles
from runctrace.backends.bcc.records import C, KernelRecord, decode_record, program_argv
from runctrace.errors import NotSupported
from runctrace.runc.binaries import RuncBinary, find_runc
from runctrace.runc.proc import mono_to_wall_ns, read_proc, runc_cwd
from runctrace.runc.tracker import Tracker

# What the ring buffer callback returns to libbpf: 0 continues consuming.
_RB_CONTINUE = 0
_RECENT_RECORDS = 1024
_EV_EXEC, _EV_INIT_EXEC, _EV_ORPHAN_INIT_EXEC = C["RT_EV_EXEC"], C["RT_EV_INIT_EXEC"], C["RT_EV_ORPHAN_INIT_EXEC"]
_EV_RUNC_EXIT, _EV_CONTAINER_EXIT = C["RT_EV_RUNC_EXIT"], C["RT_EV_CONTAINER_EXIT"]
# The kernel's drop counters (map "counters"), each with what it means for the user.
_DROP_COUNTERS = (
    (C["RT_C_RINGBUF_FULL"], "ring buffer full: kernel records dropped"),
    (C["RT_C_PROCS_FULL"], "procs map full: runc processes went unfollowed"),
)
_ANY_COUNTER = C["RT_C_ANY"]


class _DropCounters:
    """The kernel's ``counters`` map: what it had to drop, as user space learns it."""

    def __init__(self, lib: Any, fd: int, stats: Stats) -> None:
        self._lib, self._fd, self._stats = lib, fd, stats
        self._seen = [0] * C["RT_C_COUNT"]
        self._key, self._value = ct.c_int(0), ct.c_uint64(0)

    def read(self) -> bool:
        """Add what the kernel dropped since the last look to ``stats.lost``;
        True if it dropped anything (the tracker should resync).

        Runs after every wake-up. BCC's table wrapper costs tens of microseconds a
        lookup there (on caches runc just evicted); one bpf_lookup_elem into reused
        ctypes values costs a few. Only the sum (RT_C_ANY) is looked at each time:
        the others only when it moved, which is seldom.
        """
        key, value = self._key, self._value
        key.value = _ANY_COUNTER
        if self._lib.bpf_lookup_elem(self._fd, ct.byref(key), ct.byref(value)) < 0:
            return False  # an array map always has the index: cannot happen
        if value.value == self._seen[_ANY_COUNTER]:
            return False
        self._seen[_ANY_COUNTER] = value.value
        dropped = False
        for index, what in _DROP_COUNTERS:
            key.value = index
            if self._lib.bpf_lookup_elem(self._fd, ct.byref(key), ct.byref(value)) < 0:
                continue  # an array map always has the index: cannot happen
            delta = value.value - self._seen[index]
            if delta > 0:
                self._seen[index] = value.value
                self._stats.lost += delta
                dropped = True
                log.warning("runctrace: %s (%d)", what, delta)
                if what not in self._stats.notes:
                    self._stats.notes.append(what)
        return dropped


class BccNotifier(LoopNotifier):
    """Container ADD/REMOVE events from BPF tracepoints. See the package doc."""

    name = "bcc"

    @classmethod
    def supported(cls, runc_paths: tuple[str, ...] = ()) -> Support:
        try:
            problem = program.setup_problem()
            if problem:
                return Support(False, problem)
            try:
                binaries = find_runc(runc_paths)
            except NotSupported as err:
                return Support(False, str(err))
            return Support(True, "watching execs of the inodes of " + ", ".join(b.path for b in binaries))
        except Exception as err:  # supported() never raises
            return Support(False, f"unexpected error while checking: {err!r}")

    def __init__(self, callback: Optional[Callback] = None, runc_paths: tuple[str, ...] = ()) -> None:
        super().__init__(callback)
        support = self.supported(runc_paths)
        if not support:
            raise NotSupported(f"the bcc backend cannot run: {support.reason}")
        self._binaries: list[RuncBinary] = find_runc(runc_paths)
        self.runc_files: Optional[RuncFiles] = None
        self._bin_dirs: Optional[BinaryDirs] = None
        # Records received from the kernel, of any kind, and the last few of them
        # decoded (for debugging, and for tests that prove which processes' records
        # crossed: an exec storm of other programs must add none).
        self.kernel_events = 0
        self.recent_records: collections.deque[KernelRecord] = collections.deque(maxlen=_RECENT_RECORDS)
        self._records: list[bytes] = []
        self._bpf: Any = None
        self._epoll: Optional[select.epoll] = None
        self._tracker: Optional[Tracker] = None
        try:
            self._bpf = self._load()
            # The per-exec map operations call libbpf directly with reused ctypes
            # values: BCC's Table wrapper costs tens of microseconds a call.
            from bcc.libbcc import lib

            self._lib = lib
            self._procs_fd, self._pid_key = self._bpf[b"procs"].map_fd, ct.c_uint32(0)
            self._counters = _DropCounters(lib, self._bpf[b"counters"].map_fd, self.stats)
            self.exits = ExitWatch(self._bpf, lib, self.stats)
            self._ended = self.exits.ended  # bound once: called for every container's exit record
            # The kernel reports a `runc run`'s init starting its program, with its
            # PID: such calls need no watch on runc's state files (see Tracker).
            self._tracker = self.exits.tracker = Tracker(
                self.name, self._emit, self.stats, self.exits.watch, sees_inits=True
            )
            self._epoll = select.epoll(flags=select.EPOLL_CLOEXEC)
            # A BPF ring buffer's map fd is itself pollable (readable when records
            # wait): one epoll serves the ring buffer, the state watch, the binaries'
            # directories and the wake-up fd.
            self._ring_fd = self._bpf[b"events"].map_fd
            self._bin_dirs = BinaryDirs(self.runc_files, self._binaries, runc_paths)
            self._bin_fd = self._bin_dirs.fileno()
            for fd in (self._ring_fd, *self._tracker.states.fds(), self._wake, self._bin_fd):
                self._epoll.register(fd, select.EPOLLIN)
        except OSError as err:
            self._release()
            raise NotSupported(f"cannot set up the bcc backend: {err.strerror or err}") from err
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name="runctrace-bcc", daemon=True)
        self._thread.start()

    @property
    def binaries(self) -> list[RuncBinary]:
        """The runc binaries found (again, after a replacement), as find_runc reports them."""
        return self._bin_dirs.binaries if self._bin_dirs is not None else self._binaries

    def _load(self) -> Any:
        b = program.compile_and_attach()
        try:
            self.runc_files = RuncFiles(b[b"runc_files"], b[b"runc_inos"])
            self.runc_files.follow(self._binaries)
            b[b"events"].open_ring_buffer(self._on_record)
        except BaseException:
            b.cleanup()
            raise
        return b

    # ------------------------------------------------------------------ public API

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake_loop()
        if self._thread is not threading.current_thread():
            program.join_fully(self._thread)
        self._release()
        self._finish_iteration()

    def _release(self) -> None:
        if self._bpf is not None:
            program.unload(self._bpf)
            self._bpf = None
        if self.runc_files is not None:
            self.runc_files.close()
        if self._bin_dirs is not None:
            self._bin_dirs.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._close_wake()

    # ------------------------------------------------------------------ event loop

    def _run(self) -> None:
        self._loop_thread_started()
        try:
            while not self._closed.is_set():
                try:
                    ready = self._epoll.poll(self.exits.poll_timeout())
                except InterruptedError:
                    continue
                fds = {fd for fd, _ in ready}
                # The ring buffer first: an exec arms the state watch that a state
                # event in the same wake-up may be for (and arming looks at once).
                if self._ring_fd in fds:
                    self._drain_ring()
                if self._bin_fd in fds:
                    self._bin_dirs.read()
                if self._counters.read():  # kernel drops ask for a resync
                    self._resync = True
                self._serve_shared(fds)
                self.exits.tick()
            # Exits that happened before close() was called are still delivered.
            self._drain_ring()
            if self._counters.read():
                self._resync = True
            self.exits.finish_endings(flush=True)
        except Exception as err:  # never die silently; close() still releases the fds
            self._loop_failed(err)

    def _on_record(self, _ctx, data, size) -> int:
        # Called by libbpf inside ring_buffer_consume: copy and return at once; the
        # records are handled afterwards, outside the C callback.
        self._records.append(ct.string_at(data, size))
        return _RB_CONTINUE

    def _drain_ring(self) -> None:
        self._bpf.ring_buffer_consume()
        records, self._records = self._records, []
        self.kernel_events += len(records)
        for raw in records:
            try:
                rec = decode_record(raw)
            except ValueError as err:
                log.warning("runctrace: bad ring buffer record: %s", err)
                self.stats.missed += 1
                continue
            self.recent_records.append(rec)
            try:
                self._on_record_decoded(rec)
            except Exception as err:  # one record must never end the loop, nor lose the rest of the batch
                self._message_failed(f"ring buffer record {rec.type} of PID {rec.pid}", err)

    def _on_record_decoded(self, rec: KernelRecord) -> None:
        if rec.type == _EV_EXEC:
            self._on_exec(rec)
        elif rec.type == _EV_INIT_EXEC:
            argv = program_argv(rec)
            self._tracker.init_started(rec.pid, rec.init_pid, rec.namespaces, argv=argv)
            # A `runc start` that came before its `runc create` had exited: the
            # create's init, resolved from state.json already, is starting now,
            # and this is its argv too. (For a `run`, or a create that
            # init_started has just resolved, the argv was compared there: a no-op.)
            self._tracker.init_exec(rec.init_pid, argv)
        elif rec.type == _EV_ORPHAN_INIT_EXEC:
            # A create's init starting its program at `runc start`: the container
            # was resolved at its runc's exit, an earlier record.
            self._tracker.init_exec(rec.pid, program_argv(rec))
        elif rec.type == _EV_RUNC_EXIT:
            self._tracker.runc_exited(rec.pid, rec.status, init_pid=rec.init_pid)
        elif rec.type == _EV_CONTAINER_EXIT:
            self._ended(rec.pid, rec.status, mono_to_wall_ns(rec.ktime_ns))

    # ------------------------------------------------------------- runc invocations

    def _on_exec(self, rec: KernelRecord) -> None:
        pid = rec.pid
        runtime = self._runtime_of(rec)
        if runtime is None:
            self._forget_proc(pid)
            return
        argv = list(rec.argv)
        if rec.flags & C["RT_F_ARGS_TRUNCATED"]:
            argv = self._complete_argv(pid, argv)
        # (The kernel sent only calls with "create", "run" or "restore" among their
        # arguments, or cut short: the tracker's parse has the last word, below.)
        cwd, moved = runc_cwd(pid, rec.ktime_ns)
        rexec = self._tracker.runc_started(
            pid, argv, cwd, runtime, started_ns=rec.ktime_ns, cwd_may_be_bundle=moved
        )
        if rexec is None:
            # no container after all ("--root run", state, delete...): its exit is
            # of no interest. (A container is only ever made by create, run or restore.)
            self._forget_proc(pid)

    def _runtime_of(self, rec: KernelRecord) -> Optional[str]:
        """The watched binary's main path, or None if this exec is not a watched runc."""
        if not rec.flags & C["RT_F_UNVERIFIED"]:
            return self.runc_files.path(rec.runc_id)
        # The inode number matched on a filesystem where it may name another file
        # too (RuncFiles). The exec has completed: /proc/PID/exe is the file.
        try:
            return self.runc_files.path_run_by(rec.runc_id, rec.pid)
        except OSError:
            self.stats.missed += 1  # ended before it could be checked
            return None

    def _complete_argv(self, pid: int, argv: list[str]) -> list[str]:
        """argv was cut in the kernel; /proc/PID/cmdline has it whole if runc still runs."""
        try:
            raw = read_proc(f"/proc/{pid}/cmdline")
        except OSError:
            self.stats.missed += 1
            return argv
        full = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]]
        if full[: max(len(argv) - 1, 0)] == argv[:-1]:
            return full
        self.stats.missed += 1
        return argv

    def _forget_proc(self, pid: int) -> None:
        self._pid_key.value = pid
        # fails with ENOENT if it has exited already: nothing to forget then
        self._lib.bpf_delete_elem(self._procs_fd, ct.byref(self._pid_key))


__all__ = ["BccNotifier"]
