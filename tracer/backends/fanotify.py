"""The fanotify backend: see runc being executed, then follow runc's own records.

How it works, and why each part is needed
-----------------------------------------
1. **fanotify, notification class, on the runc inode.** ``FAN_OPEN_EXEC`` fires when
   any process opens a runc binary for execution. A *notification* group never makes
   the exec wait for us: a frozen (SIGSTOP) or dead recorder cannot delay a container
   start. (Inspektor Gadget's runcfanotify used ``FAN_OPEN_EXEC_PERM`` with a
   blocking reader; one stuck reader then froze every runc exec on the host.)
2. **The process-events connector (netlink).** fanotify reports the open of the
   file, while the exec is under way: ``/proc/PID/cmdline`` may still show the
   caller's. The connector's ``PROC_EVENT_EXEC`` says when the exec is done, so
   runc's argv is read then, with no polling. The same socket's
   ``PROC_EVENT_EXIT`` carries the wait status of every exiting process, which
   gives both "runc create finished" and "the container's init exited, with this
   exit code or signal". A classic-BPF socket filter drops all other connector
   messages in the kernel.

   Only this socket wakes the loop. fanotify queues its event while the exec opens
   the file, before the exec completes and the connector sends EXEC; so the queue
   is read when the first EXEC of each batch of messages is handled (not counting
   a runc init starting its container's program, which is not runc). It holds the
   event of every exec whose EXEC is in that batch by then: the batch was received
   after those EXECs were sent. Waking for fanotify too would cost a wake-up per
   runc exec (3 of the 12 per `runc run`) to learn nothing that cannot wait for
   the EXEC.

   The socket is read in batches, as a network card coalesces interrupts. A
   `runc run` is about nine messages over 20 ms, in clusters: its `runc init`'s
   two execs a millisecond apart, then the init's rename and two helpers'
   exits within half a millisecond, then the program's exec, its exit and
   runc's within two. A wake-up of this thread costs more CPU than most
   messages' handling (some 30 us on a small VM), so when the socket wakes the
   loop, the thread first sleeps ``_COALESCE_NS`` (3 ms) and then takes
   everything queued in one read. While it sleeps, nothing waits on the socket:
   the messages that arrive are queued and wake nobody. (Blocking in the read
   with a receive timeout, to end the batch at a quiet gap, woke the thread in
   the kernel at every message, and the timeout counts in scheduler ticks, so a
   message waited up to 3 ms plus a tick; a sleep is exact, and costs one timer
   wake-up per batch.) A message is held 3 ms after the wake-up, plus the
   handling of the batch ahead of it if it came during that: about 5 ms at
   worst on a small VM, against a 10 ms target for detection and termination
   delay.
3. **The container's init, from the same socket.** runc's init names itself
   ``runc:[2:INIT]`` (``prctl(PR_SET_NAME)``), which the connector reports as a
   ``PROC_EVENT_COMM``; the filter lets through only renames to that name. Its
   next ``PROC_EVENT_EXEC`` is the container's program starting: a `runc run` is
   resolved right there, with the PID, as the eBPF backend does from its
   tracepoints. (runc puts its init under itself with ``CLONE_PARENT``: the init's
   parent is the runc process that made the container.) If this loop is so far
   behind that the init has already ended, its ``PROC_EVENT_EXIT`` names the parent.
4. **runc's own records** turn the other calls into a container with a PID: the
   ``--pid-file``, or ``<root>/<id>/state.json`` as soon as runc writes it (a
   `create`'s init runs its program only at `runc start`, after this runc has
   exited). That part is shared with the eBPF backend: see :mod:`runctrace.runc.tracker`.

Everything runs on one thread around one epoll: no thread per container.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import threading
import time
from typing import Optional

from runctrace import _sys
from runctrace.errors import NotSupported
from runctrace.backends.base import Callback, LoopNotifier, Support, log
from runctrace.runc.proc import cgroup_of, namespaces
from runctrace.runc.tracker import Container, RuncExec, Tracker
from runctrace.runc.proc import mono_to_wall_ns, read_stat, runc_cwd
from runctrace.runc.args import parse_runc_args
from runctrace.runc.binaries import RUNC_INIT_COMM, RuncBinary, find_runc
from runctrace.runc.proc import read_proc

# Bounded caches: sized for bursts far beyond what one host starts per second.
_RECENT = 4096
# Coalescing (module doc, 2.): when the connector wakes the loop, sleep this long
# before reading, so that the messages that follow the first are read with it.
# Measured interleaved on a 2-core VM (fanotify CPU per container, against
# waiting in the read for a quiet tick): 2 ms cost 8% more in a burst, 3 ms
# was even (-4% in a burst, 0 sequential), 5 ms saved 17% in a burst but
# would take the delay counted from runc's write of state.json (p99 8.5 ms at
# 3 ms) over the 10 ms target.
_COALESCE_NS = 3_000_000
# A runc call gone unread that lived longer than this was no state, delete or kill,
# nor a create that failed at once: it may have made a container even with no
# init naming itself (a restore: CRIU gives the process back its old name).
_UNREAD_SHORT_NS = 50_000_000
_PENDING_EXEC_TIMEOUT_S = 5.0
# inotify on the directories holding runc binaries: a package upgrade renames a new
# file over the old one (MOVED_TO), an installer may create it in place (CREATE).
_IN_BIN_DIR_MASK = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.CLOSE_WRITE | _sys.In.ONLYDIR
# fanotify_mark's answers for a file on a filesystem that cannot report file
# handles: none (EOPNOTSUPP), a zero fsid (ENODEV), or an fsid that differs
# from its mount's (EXDEV: a btrfs subvolume, an overlayfs layer)
_NO_FID = (errno.EOPNOTSUPP, errno.ENODEV, errno.EXDEV)


class FanotifyNotifier(LoopNotifier):
    name = "fanotify"

    @classmethod
    def supported(cls, runc_paths: tuple[str, ...] = ()) -> Support:
        if os.geteuid() != 0:
            return Support(False, "needs root (fanotify and the process-events connector need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
        try:
            fd = _sys.fanotify_init(_sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC, os.O_RDONLY)
            os.close(fd)
        except OSError as err:
            if err.errno == errno.EPERM:
                return Support(False, "fanotify_init: operation not permitted (needs CAP_SYS_ADMIN: run as root)")
            return Support(False, f"fanotify_init failed: {err.strerror} (kernel needs CONFIG_FANOTIFY)")
        except AttributeError:
            return Support(False, "libc has no fanotify_init")
        try:
            _sys.open_proc_connector(exec_events=False).close()
        except OSError as err:
            if err.errno == errno.EPERM:
                return Support(False, "process-events connector: operation not permitted (needs CAP_NET_ADMIN: run as root)")
            return Support(False, f"process-events connector unavailable: {err.strerror} (kernel needs CONFIG_PROC_EVENTS)")
        try:
            binaries = find_runc(runc_paths)
        except NotSupported as err:
            return Support(False, str(err))
        return Support(True, "watching " + ", ".join(b.path for b in binaries))

    def __init__(self, callback: Optional[Callback] = None, runc_paths: tuple[str, ...] = ()) -> None:
        super().__init__(callback)
        if os.geteuid() != 0:
            raise NotSupported("the fanotify backend needs root")
        self._runc_paths = runc_paths
        self.binaries: list[RuncBinary] = find_runc(runc_paths)
        self._by_inode = {(b.dev, b.ino): b.path for b in self.binaries}
        self._fds: list[int] = []
        self._cn = None
        self._epoll = None
        self._tracker: Optional[Tracker] = None
        try:
            self._fan, self._fan_fid = self._open_exec_group([b.path for b in self.binaries])
            self._fds.append(self._fan)
            self._fan_rx = _sys.Reader(self._fan)
            self._cn = _sys.open_proc_connector(comm=RUNC_INIT_COMM)
            # one reused buffer: socket.recv(n) allocates n bytes first, and a large
            # n is an mmap and munmap per message (~8 us each, measured). A
            # datagram holds one message of ~80 bytes; a wake-up's datagrams
            # are taken in one recvmmsg.
            self._cn_rx = _sys.DatagramReader(self._cn.fileno())
            self._bin_ino = _sys.inotify_init1(_sys.IN_NONBLOCK | _sys.IN_CLOEXEC)
            self._fds.append(self._bin_ino)
            self._bin_rx = _sys.Reader(self._bin_ino, 16 * 1024)
            self._tracker = Tracker(self.name, self._emit, self.stats, self._watch, sees_inits=True)
            self._epoll = select.epoll(flags=select.EPOLL_CLOEXEC)
            # not self._fan: it is read when the connector reports an exec (module doc, 2.)
            for fd in (self._cn.fileno(), self._bin_ino, self._wake, *self._tracker.states.fds()):
                self._epoll.register(fd, select.EPOLLIN)
            # directory -> runc file names in it, watched for a replaced binary
            self._bin_dirs: dict[str, set[str]] = {}
            self._bin_wds: dict[int, str] = {}
            for binary in self.binaries:
                for alias in binary.aliases:
                    real = os.path.realpath(alias)
                    self._bin_dirs.setdefault(os.path.dirname(real), set()).add(os.path.basename(real))
            for directory in self._bin_dirs:
                self._bin_wds[_sys.inotify_add_watch(self._bin_ino, directory, _IN_BIN_DIR_MASK)] = directory
        except OSError as err:
            self._release()
            raise NotSupported(f"cannot set up the fanotify backend: {err.strerror}") from err
        except BaseException:
            self._release()
            raise

        self._pending_exec: dict[int, float] = {}  # pid -> when its runc exec was seen; exec not done yet
        self._unsure: set[int] = set()  # watched inits that looked gone: settled after each wakeup
        # pid -> CLOCK_MONOTONIC ns of its last exec, for any process on the host
        # whose exec was not matched to a fanotify event (yet: see module doc, 2.)
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
        # their exit. runc 1.1's init execs runc a second time, a sealed copy of
        # itself: that exec needs no read.
        self._runc_inits: collections.OrderedDict[int, None] = collections.OrderedDict()
        # the init whose exec is being handled: see _watch
        self._execing_init = 0
        self._thread = threading.Thread(target=self._run, name="runctrace-fanotify", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake_loop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._release()
        self._finish_iteration()

    def _release(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        if self._cn is not None:
            self._cn.close()
        if self._tracker is not None:
            self._tracker.close()
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        self._close_wake()

    # ------------------------------------------------------------------ event loop

    def _run(self) -> None:
        self._loop_thread_started()
        try:
            while not self._closed.is_set():
                # Sleep without a timeout unless something waits on a deadline: an
                # idle recorder wakes up for nothing.
                timeout = 1.0 if self._pending_exec else None
                try:
                    ready = self._epoll.poll(timeout)
                except InterruptedError:
                    continue
                fds = {fd for fd, _ in ready}
                if self._cn.fileno() in fds:
                    self._read_connector(hold=True)
                if self._bin_ino in fds:
                    self._read_bin_dirs()
                self._expire_pending()
                # a runc call whose arguments were gone before we could read them
                # (the recorder fell behind, or was stopped) asked for a resync
                self._serve_shared(fds)
                self._settle()
                while self._resync and not self._closed.is_set():
                    # asked for by messages _settle read: done now, not at the
                    # next wake-up, which a quiet host may not bring for long
                    # (and the resync's own settling may ask for another)
                    self._serve_shared(set())
                    self._settle()
        except Exception as err:  # never die silently; close() still releases the fds
            self._loop_failed(err)

    def _read_fanotify(self) -> None:
        for rec in self._fan_rx.fanotify_records():
            if rec.fd >= 0:
                os.close(rec.fd)  # a group without REPORT_FID: never leak the fd
            if rec.mask & _sys.FAN_Q_OVERFLOW:
                self.stats.lost += 1
                self._resync = True
                log.warning("runctrace: fanotify queue overflowed; runc execs were lost")
                continue
            if rec.mask & _sys.FAN_OPEN_EXEC:
                self._on_runc_exec(rec.pid)

    def _on_runc_exec(self, pid: int) -> None:
        if pid in self._runc_inits:
            del self._runc_inits[pid]  # it does so once: a later runc exec is read
            return  # `runc init` exec'ing its own copy: still `runc init`
        # If the connector already reported this pid's exec, and the process now
        # runs runc, the arguments are readable; otherwise wait for PROC_EVENT_EXEC.
        exec_ns = self._recent_exec.get(pid)
        if exec_ns is not None:
            runtime = self._runc_exe(pid)
            if runtime is not None:
                del self._recent_exec[pid]
                self._resolve_exec(pid, runtime, exec_ns)
                return
        self._pending_exec[pid] = time.monotonic()

    def _runc_exe(self, pid: int) -> Optional[str]:
        """The watched runc binary ``pid`` runs now (the fanotify event's file), or
        None if it runs something else, or is gone."""
        try:
            st = os.stat(f"/proc/{pid}/exe")
            path = self._by_inode.get((st.st_dev, st.st_ino))
            if path is not None:
                return path
            # runc's sealed memfd copy of itself (`runc init`)
            return "runc" if os.readlink(f"/proc/{pid}/exe").startswith("/memfd:") else None
        except OSError:
            return None

    def _read_connector(self, hold: bool = False) -> None:
        """Handle every queued connector message. ``hold``: first wait for the
        messages that follow the one that woke the loop (coalescing: module doc, 2.)."""
        # The fanotify queue is read at the first EXEC of each batch: it holds
        # the events of all the batch's execs by then (module doc, 2.).
        overflowed = False
        if hold:
            time.sleep(_COALESCE_NS / 1e9)
        while True:
            try:
                batch = self._cn_rx.recv_batch()
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                # the kernel dropped messages for us
                self.stats.lost += 1
                self._resync = True
                # the lost messages may hold every EXEC: read fanotify anyway,
                # and forget the runc inits (their exits may be among them)
                overflowed = True
                self._runc_inits.clear()
                self._unread.clear()  # their exits may be among the lost (the resync covers them)
                log.warning("runctrace: process-events connector overflowed; exits may be lost")
                continue
            if batch is None:
                break
            # (each datagram is a view of the Reader's buffer: nothing below
            # reads the socket)
            fanotify_read = False
            for data in batch:
                for ev in _sys.decode_proc_events(data):
                    try:
                        fanotify_read = self._on_message(ev, fanotify_read)
                    except Exception as err:  # one message must never end the loop
                        self._message_failed(f"{ev!r}", err)
            if len(batch) < self._cn_rx.batch:
                break  # all that was queued: epoll reports what comes next
        if overflowed:
            self._read_fanotify()

    def _on_message(self, ev: "_sys.ProcEvent", fanotify_read: bool) -> bool:
        """One connector message; returns whether the fanotify queue has been read
        in this batch (see _read_connector)."""
        if ev.what == _sys.PROC_EXEC:
            # an earlier exec of the same process (a wrapper that exec'd
            # runc) must not be matched to this exec's fanotify event
            self._recent_exec.pop(ev.tgid, None)
            if ev.tgid in self._inits:
                pass  # a runc init starting its container's program, not runc
            elif not fanotify_read:
                # this exec's fanotify event, if it was runc's, is queued by
                # now (module doc, 2.): read it before the EXEC is handled
                self._read_fanotify()
                fanotify_read = True
            self._on_exec(ev.tgid, ev.timestamp_ns)
        elif ev.what == _sys.PROC_EXIT:  # of whole processes: threads are filtered out
            self._on_exit(ev.tgid, ev.exit_status, ev.timestamp_ns, ev.parent_tgid)
        elif ev.what == _sys.PROC_COMM and ev.comm == RUNC_INIT_COMM and ev.pid == ev.tgid:
            self._on_init_named(ev.tgid, ev.timestamp_ns)
        return fanotify_read

    def _on_init_named(self, pid: int, when_ns: int) -> None:
        """A runc init named itself: remember its runc, for when it execs its program.

        Its parent is read now: it is normally alive (it has more setup to do before
        its exec), and its parent is the runc that made it (CLONE_PARENT). One small
        read per container; the init of a `runc exec` or of a `create` shows up
        here too, and is dropped when it execs (no unresolved run is its parent).
        """
        st = read_stat(pid)
        rexec = self._tracker.calls.get(st.ppid) if st is not None else None
        if rexec is None:
            # not made by a create or run whose arguments were read: perhaps by
            # one gone unread (_on_exit)
            self._untied_init_ns = max(self._untied_init_ns, when_ns)
        if st is None:
            self._inits[pid] = None  # gone already (this loop is behind): its exit names its parent
        else:
            if rexec is not None and rexec.call.command == "run":
                # A `run` is resolved at this init's exec (_init_execd), or at its
                # runc's exit if that comes first. The init's namespaces and cgroup
                # are final by now (runc's first two stages set them up before this
                # one is made), and a container that ends at once has ended before
                # either message is read (coalescing). Other inits (`runc exec`'s,
                # a create's) are not resolved there.
                rexec.init_seen = (pid, {**namespaces(pid), "cgroup": cgroup_of(pid)})
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
        if self._pending_exec.pop(pid, None) is not None:
            self._resolve_exec(pid, None, exec_ns)
            return
        self._recent_exec[pid] = exec_ns
        if len(self._recent_exec) > _RECENT:
            self._recent_exec.popitem(last=False)

    def _init_execd(self, runc_pid: int, init_pid: int, init_start: Optional[int]) -> None:
        """``init_pid``, made by ``runc_pid``, started its program: a `runc run` is resolved."""
        if runc_pid not in self._tracker.calls and runc_pid in self._recent_exec:
            # its runc's exec was seen and its fanotify event was not: read the
            # queue now (after an overflow, its event may be queued still)
            self._read_fanotify()
        rexec = self._tracker.calls.get(runc_pid)
        if rexec is None:
            return  # a `runc exec`, or a create's init at `runc start`: nothing in flight
        if init_start is not None and rexec.start_ticks is not None and rexec.start_ticks > init_start:
            return  # that runc started after this init: a new runc on a reused PID
        self._tracker.init_started(runc_pid, init_pid)

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
        if self._pending_exec.pop(pid, None) is not None:
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
        self._tracker.pid_exited(pid, status, mono_to_wall_ns(mono_ns))
        if pid in self._tracker.calls:
            self._tracker.runc_exited(pid, status)

    def _resolve_exec(self, pid: int, runtime: Optional[str], exec_ns: int) -> None:
        """runc's exec is done: read its arguments. ``exec_ns``: when (CLOCK_MONOTONIC).

        ``runtime``: the runc binary the process was seen running, or None if not
        looked at yet. Then it is looked at here, for a call that makes a container:
        fanotify reports the open, and an exec can still fail after it (E2BIG, ...);
        the process may then exec something else, whose arguments are not runc's.
        """
        try:
            raw = read_proc(f"/proc/{pid}/cmdline")
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ESRCH):
                # not gone but unreadable (EMFILE, ENOMEM...): whatever it makes
                # is on disk once it exits, and its exit looks there (time 0)
                self._unread[pid] = 0
                return
            raw = b""
        argv = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] if raw else []
        if not argv:
            # runc exited before we could read its arguments: a short call (state,
            # delete, kill...) whose messages were held, or the recorder fell behind
            # or was stopped. A call that makes a container has its init name
            # itself before it exits: its exit tells whether one did (_on_exit).
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
                if os.path.exists(f"/proc/{pid}"):
                    return  # that runc exec failed after the open: the process runs something else
                # gone already: its arguments were runc's, of the one binary if one
                paths = set(self._by_inode.values())
                runtime = paths.pop() if len(paths) == 1 else "runc"
        cwd, late = runc_cwd(pid, exec_ns)
        self._tracker.runc_started(pid, argv, cwd, runtime, started_ns=exec_ns, cwd_may_be_bundle=late)

    def _missed_call(self) -> None:
        """A runc call whose arguments were not read may have made a container:
        count it, and look at runc's state on disk after this wake-up."""
        self.stats.missed += 1
        self._resync = True

    def _watch(self, container: Container, expected_start: Optional[int], rexec: Optional[RuncExec]) -> None:
        """The connector reports every exit: just make sure this one has not passed.

        Called right after the tracker registered ``container``. Nothing to check
        when that came from its init's EXEC message, being handled now: its EXIT,
        if it has exited already, is queued behind that message. Otherwise, if its
        init looks gone, its EXIT is in the recent-exit cache or still queued on the socket:
        :meth:`_settle` decides once this wakeup's messages are read. (Not here:
        reading the socket from inside its own handler would recurse once per
        queued container, and a backlog of hundreds would overflow the stack.)
        """
        if container.pid == self._execing_init:
            return
        stat = read_stat(container.pid)
        if stat is not None and stat.state not in ("Z", "X", "x") and (
            expected_start is None or stat.start == expected_start
        ):
            return  # running (or exiting right now: its EXIT message is on the way)
        self._unsure.add(container.pid)

    def _settle(self) -> None:
        while self._unsure:
            self._read_connector()  # may resolve some, and add more
            for pid in list(self._unsure):
                self._unsure.discard(pid)
                if pid not in self._tracker.containers:
                    continue  # its EXIT was among the queued messages
                status = self._recent_exit.get(pid)
                if status is None:
                    stat = read_stat(pid)
                    if stat is not None and stat.state == "Z":
                        # exit_notify() has run but the connector message may not be
                        # sent yet: it will come, and end the container then
                        continue
                error = None if status is not None else "exited before it was watched; exit status unknown"
                self._tracker.pid_exited(pid, status, error=error)

    # ------------------------------------------------------------ runc binaries

    def _open_exec_group(self, paths: list[str], fid: bool = True) -> tuple[int, bool]:
        """The fanotify group that reports execs of the runc binaries.

        CLASS_NOTIF: the exec never waits for us (see module doc). NONBLOCK: reads
        in the loop return EAGAIN instead of hanging. CLOEXEC: runc or anything we
        spawn must not inherit the group. (No FAN_UNLIMITED_QUEUE: a stopped
        recorder must not pin unbounded kernel memory; an overflow is reported as
        FAN_Q_OVERFLOW and counted.)

        REPORT_FID where the binaries' filesystems allow it: events then name the
        file by handle instead of carrying an open fd of it, and the only fields
        read are the PID and the mask. With fds, the kernel opens runc for us at
        each of the three runc execs of a container, and we close it again: two
        syscalls and a file open per exec, for a name /proc/PID/exe also gives.
        A filesystem that cannot encode file handles (or a kernel before 5.1)
        refuses the mark or the flag: then the group reports fds, as before.
        Returns the group's fd, and whether it reports file handles.
        """
        base = _sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC | _sys.FanInit.NONBLOCK
        for flags in ((base | _sys.FanInit.REPORT_FID, base) if fid else (base,)):
            try:
                # the event fds (without REPORT_FID): read-only, and not inherited
                fd = _sys.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE)
            except OSError as err:
                if flags != base and err.errno == errno.EINVAL:
                    continue  # no REPORT_FID in this kernel
                raise
            try:
                for path in paths:
                    self._mark_binary(fd, path)
            except OSError as err:
                os.close(fd)
                if flags != base and err.errno in _NO_FID:
                    continue
                raise
            return fd, flags != base
        raise AssertionError("unreachable")

    @staticmethod
    def _mark_binary(group: int, path: str) -> None:
        # An inode mark (no FAN_MARK_MOUNT): only this file's execs reach us.
        _sys.fanotify_mark(group, _sys.FanMark.ADD, _sys.FanEvent.OPEN_EXEC, path)

    def _read_bin_dirs(self) -> None:
        changed = False
        for rec in self._bin_rx.inotify_records():
            if rec.name in self._bin_dirs.get(self._bin_wds.get(rec.wd, ""), ()):
                changed = True
        if changed:
            self._refresh_binaries()

    def _refresh_binaries(self) -> None:
        """A runc file was replaced (a package upgrade renames a new file over it):
        the mark stays on the old inode, so mark the new one."""
        try:
            binaries = find_runc(self._runc_paths)
        except NotSupported:
            return  # mid-replacement; the rename that completes it brings us back here
        for binary in binaries:
            key = (binary.dev, binary.ino)
            if key not in self._by_inode:
                try:
                    self._mark_binary(self._fan, binary.path)
                except OSError as err:
                    if not (self._fan_fid and err.errno in _NO_FID and self._reopen_without_fid(binaries)):
                        log.warning("runctrace: cannot watch new %s: %s", binary.path, err.strerror)
                        continue
                self._by_inode[key] = binary.path
                log.info("runctrace: %s was replaced; watching the new file", binary.path)
        self.binaries = binaries

    def _reopen_without_fid(self, binaries: list[RuncBinary]) -> bool:
        """A new runc file where file handles cannot be reported (another
        filesystem): one group cannot mix both, so a group that reports fds takes
        over, with every binary marked. True if it did."""
        try:
            fd, _fid = self._open_exec_group([b.path for b in binaries], fid=False)
        except OSError as err:
            log.warning("runctrace: cannot watch the runc binaries anew: %s", err.strerror)
            return False
        self._read_fanotify()  # what the old group holds
        old, self._fan, self._fan_fid = self._fan, fd, False
        self._fds[self._fds.index(old)] = fd
        self._fan_rx = _sys.Reader(fd)
        os.close(old)
        log.info("runctrace: a runc binary's filesystem reports no file handles; watching by fd")
        return True

    def _expire_pending(self) -> None:
        if not self._pending_exec:
            return
        deadline = time.monotonic() - _PENDING_EXEC_TIMEOUT_S
        for pid, when in list(self._pending_exec.items()):
            if when < deadline:
                del self._pending_exec[pid]
                self._missed_call()
