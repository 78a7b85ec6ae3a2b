"""The fanotify backend: see runc being executed, then follow runc's own records.

How it works, and why each part is needed
-----------------------------------------
1. **fanotify, notification class, on the runc inode.** ``FAN_OPEN_EXEC`` fires when
   any process opens a runc binary for execution. A *notification* group never makes
   the exec wait for us: a frozen (SIGSTOP) or dead recorder cannot delay a container
   start. (Inspektor Gadget's runcfanotify used ``FAN_OPEN_EXEC_PERM`` with a
   blocking reader; one stuck reader then froze every runc exec on the host.)
2. **The process-events connector (netlink).** At fanotify time the exec has not
   happened yet: ``/proc/PID/cmdline`` still shows the caller's. The connector's
   ``PROC_EVENT_EXEC`` says when the exec is done, so runc's argv is read then, with
   no polling. The same socket's ``PROC_EVENT_EXIT`` carries the wait status of every
   exiting process, which gives both "runc create finished" and "the container's
   init exited, with this exit code or signal". A classic-BPF socket filter drops all
   other connector messages in the kernel.
3. **runc's state directory.** ``runc run`` keeps running while its container
   lives, so there is no "runc exited" moment to read the container's PID at. runc
   writes ``<root>/<id>/state.json`` (via a temporary file and a rename) as soon as
   the container exists. inotify on ``<root>`` says when ``<id>/`` appears; a second
   fanotify group with ``FAN_CLOSE_WRITE`` on ``<id>/`` then hands us each state
   file *open*, so it is readable even if a short-lived container's directory is
   already deleted by the time the recorder gets to it.

Where the container PID comes from: the ``--pid-file`` when the call has one (that is
what containerd's shim reads), read when ``runc create`` exits; otherwise
``state.json``'s ``init_process_pid``, read when it appears (or when runc exits, as a
fallback). ``init_process_start`` is compared with ``/proc/PID/stat`` so a reused PID
is never mistaken for the container.

Everything runs on one thread around one epoll: no thread per container.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from . import _sys
from .discovery import expand_roots, running_containers
from .enrich import caller_comm, cgroup_of, manager_of, namespaces
from .errors import NotSupported
from .events import ContainerEvent, EventType
from .notifier import Callback, Notifier, Support, log
from .runcargs import RuncCall, parse_runc_args
from .runtimes import RuncBinary, find_runc
from .spec import (
    process_start_ticks, read_config, read_pid_file, read_state, read_state_fd, rfc3339_to_ns, state_bundle,
)

# Bounded caches: sized for bursts far beyond what one host starts per second.
_RECENT = 4096
_PENDING_EXEC_TIMEOUT_S = 5.0
LOOP_NICE = -15
_IN_DIR_MASK = _sys.In.MOVED_TO | _sys.In.ONLYDIR
_IN_BIN_DIR_MASK = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.CLOSE_WRITE | _sys.In.ONLYDIR
_IN_ROOT_MASK = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.ONLYDIR


def _now_ns() -> int:
    return time.time_ns()


def _mono_to_wall_ns(mono_ns: int) -> int:
    """The connector stamps events with ktime_get_ns() (CLOCK_MONOTONIC)."""
    return time.time_ns() - (time.monotonic_ns() - mono_ns)


@dataclass
class _Call:
    """A runc create/run/restore whose container is not resolved yet."""

    pid: int  # the runc process
    call: RuncCall
    runtime: str
    seen_ns: int  # wall clock when runc's exec was seen: the add time if state has none
    caller: Optional[str] = None  # who ran runc (its parent's command name)
    resolved: bool = False


@dataclass
class _Container:
    container_id: str
    pid: Optional[int]
    bundle: Optional[str]
    config: Optional[dict[str, Any]]
    runtime: Optional[str]
    root: Optional[str]
    args: list[str] = field(default_factory=list)
    caller: Optional[str] = None
    added_ns: Optional[int] = None  # time of the add event, for the remove's lifetime
    info: dict[str, Any] = field(default_factory=dict)  # manager, namespaces, cgroup

    def enrich(self) -> None:
        """Read what only the living init can tell: call while it still runs."""
        annotations = (self.config or {}).get("annotations")
        self.info = {"manager": manager_of(self.root, self.caller, annotations)}
        if self.pid is not None:
            self.info.update(namespaces(self.pid), cgroup=cgroup_of(self.pid))


class FanotifyNotifier(Notifier):
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
        # directory -> runc file names in it, watched for a replaced binary
        self._bin_dirs: dict[str, set[str]] = {}
        self._fds: list[int] = []
        self._cn = None
        try:
            # CLASS_NOTIF: the exec never waits for us (see module doc).
            # NONBLOCK: reads in the loop return EAGAIN instead of hanging.
            # CLOEXEC: runc or anything we spawn must not inherit the group.
            # (No FAN_UNLIMITED_QUEUE: a stopped recorder must not pin unbounded
            # kernel memory; an overflow is reported as FAN_Q_OVERFLOW and counted.)
            self._fan = _sys.fanotify_init(
                _sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC | _sys.FanInit.NONBLOCK,
                # the event fds: read-only, and not inherited by anything we exec
                os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE,
            )
            self._fds.append(self._fan)
            for binary in self.binaries:
                self._mark_binary(binary.path)
            # A second group for runc's state files: its events carry open fds.
            self._fan_state = _sys.fanotify_init(
                _sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC | _sys.FanInit.NONBLOCK,
                os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE | os.O_NOATIME,
            )
            self._fds.append(self._fan_state)
            self._cn = _sys.open_proc_connector()
            self._ino = _sys.inotify_init1(_sys.IN_NONBLOCK | _sys.IN_CLOEXEC)
            self._fds.append(self._ino)
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._fds.append(self._wake)
            self._epoll = select.epoll(flags=select.EPOLL_CLOEXEC)
            for fd in (self._fan, self._fan_state, self._cn.fileno(), self._ino, self._wake):
                self._epoll.register(fd, select.EPOLLIN)
        except OSError as err:
            self._release()
            raise NotSupported(f"cannot set up the fanotify backend: {err.strerror}") from err
        except BaseException:
            self._release()
            raise

        self._pending_exec: dict[int, tuple[float, str]] = {}  # pid -> (when, runtime)
        self._recent_exec: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._recent_exit: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._calls: dict[int, _Call] = {}  # runc pid -> call
        self._awaiting: dict[str, int] = {}  # state dir -> runc pid
        self._marked: set[str] = set()  # state dirs marked on self._fan_state
        self._wd_path: dict[int, str] = {}
        self._path_wd: dict[str, int] = {}
        self._containers: dict[int, _Container] = {}  # init pid -> container
        self._requests: collections.deque = collections.deque()
        self._roots: set[str] = set()  # every runc --root seen, for discovery
        self._resync = False
        for binary in self.binaries:
            for alias in binary.aliases:
                real = os.path.realpath(alias)
                self._bin_dirs.setdefault(os.path.dirname(real), set()).add(os.path.basename(real))
        for directory in self._bin_dirs:
            self._watch(directory, _IN_BIN_DIR_MASK)
        self._thread = threading.Thread(target=self._run, name="runctrace-fanotify", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def add_watch_container_termination(self, container_id: str, pid: int) -> None:
        self._requests.append((container_id, pid))
        os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            os.eventfd_write(self._wake, 1)
        except OSError:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._release()
        self._finish_iteration()

    @property
    def running_containers(self) -> int:
        return len(self._containers)

    def _release(self) -> None:
        if getattr(self, "_epoll", None) is not None:
            self._epoll.close()
        if self._cn is not None:
            self._cn.close()
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    # ------------------------------------------------------------------ event loop

    def _run(self) -> None:
        # `runc run` of a short-lived container deletes its state.json a few ms after
        # writing it. On a busy host a normal-priority reader loses that race (seen:
        # 7 of 80 PIDs lost at concurrency 4 on 2 cores; 0 of 80 at nice -15). The
        # loop sleeps in epoll and does microseconds of work per event, so a high
        # priority costs the host nothing while idle. Per-thread: only this thread.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOOP_NICE)
        except OSError:
            pass
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
                # fanotify first, so an exec and its connector message that arrive
                # in the same wakeup are matched without the recent-exec cache.
                if self._fan in fds:
                    self._read_fanotify()
                if self._cn.fileno() in fds:
                    self._read_connector()
                if self._ino in fds:
                    self._read_inotify()
                if self._fan_state in fds:
                    self._read_state_events()
                if self._wake in fds:
                    self._serve_requests()
                self._expire_pending()
                if self._resync:
                    self._resync = False
                    self._sync_from_disk(EventType.ADD)
        except Exception:  # never die silently: log, and let iteration end
            log.exception("runctrace: fanotify event loop failed")
            self._closed.set()
            self._finish_iteration()

    def _read_fanotify(self) -> None:
        while True:
            try:
                buf = os.read(self._fan, 64 * 1024)
            except BlockingIOError:
                return
            for rec in _sys.decode_fanotify(buf):
                if rec.fd != _sys.FAN_NOFD:
                    try:
                        st = os.fstat(rec.fd)
                        runtime = self._by_inode.get((st.st_dev, st.st_ino), "runc")
                    finally:
                        os.close(rec.fd)  # every event carries an open fd: never leak it
                else:
                    runtime = "runc"
                if rec.mask & _sys.FanEvent.Q_OVERFLOW:
                    self.stats.lost += 1
                    log.warning("runctrace: fanotify queue overflowed; runc execs were lost")
                    continue
                if rec.mask & _sys.FanEvent.OPEN_EXEC:
                    self._on_runc_exec(rec.pid, runtime)

    def _on_runc_exec(self, pid: int, runtime: str) -> None:
        # If the connector already reported this pid's exec, and the process now
        # runs runc, the arguments are readable; otherwise wait for PROC_EVENT_EXEC.
        if pid in self._recent_exec and self._exec_done(pid):
            self._recent_exec.pop(pid, None)
            self._resolve_exec(pid, runtime)
        else:
            self._pending_exec[pid] = (time.monotonic(), runtime)

    def _exec_done(self, pid: int) -> bool:
        """True if ``pid`` now runs a watched runc (or runc's memfd copy of itself)."""
        try:
            st = os.stat(f"/proc/{pid}/exe")
            if (st.st_dev, st.st_ino) in self._by_inode:
                return True
            return os.readlink(f"/proc/{pid}/exe").startswith("/memfd:")
        except OSError:
            return False

    def _read_connector(self) -> None:
        while True:
            try:
                buf = self._cn.recv(256 * 1024)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ENOBUFS:  # the kernel dropped messages for us
                    self.stats.lost += 1
                    log.warning("runctrace: process-events connector overflowed; exits may be lost")
                    continue
                raise
            for ev in _sys.decode_proc_events(buf):
                if ev.pid != ev.tgid:
                    continue  # a thread, not a process
                if ev.what == _sys.ProcWhat.EXEC:
                    self._on_exec(ev.tgid)
                elif ev.what == _sys.ProcWhat.EXIT:
                    self._on_exit(ev.tgid, ev.exit_status, ev.timestamp_ns)

    def _on_exec(self, pid: int) -> None:
        pending = self._pending_exec.pop(pid, None)
        if pending is not None:
            self._resolve_exec(pid, pending[1])
            return
        self._recent_exec[pid] = time.monotonic()
        if len(self._recent_exec) > _RECENT:
            self._recent_exec.popitem(last=False)

    def _on_exit(self, pid: int, status: int, mono_ns: int) -> None:
        self._recent_exit[pid] = status
        if len(self._recent_exit) > _RECENT:
            self._recent_exit.popitem(last=False)
        self._recent_exec.pop(pid, None)
        if self._pending_exec.pop(pid, None) is not None:
            self.stats.missed += 1  # it exited before its exec completed (failed exec)
        container = self._containers.pop(pid, None)
        if container is not None:
            self._emit_remove(container, status, _mono_to_wall_ns(mono_ns))
        call = self._calls.get(pid)
        if call is not None:
            self._on_runc_exit(call, status)
            del self._calls[pid]

    # ------------------------------------------------------------- runc invocations

    def _resolve_exec(self, pid: int, runtime: str) -> None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            # runc exited before we could read its arguments (the recorder fell
            # behind, or was stopped). Whatever it started and is still running is
            # on disk: look there once this wakeup is done.
            self.stats.missed += 1
            self._resync = True
            return
        argv = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] if raw else []
        if not argv:
            self.stats.missed += 1
            return
        call = parse_runc_args(argv, cwd)
        if not call.creates_container:
            return  # start, delete, kill, init, state, a bad command line...
        self._roots.add(call.root)
        self._calls[pid] = _Call(pid, call, runtime, _now_ns(), caller_comm(pid))
        if call.pid_file is None or (call.command == "run" and not call.detach):
            # No pid file to read when runc exits, or runc stays for the container's
            # whole life (foreground `run`): take the PID from state.json as soon as
            # runc writes it.
            self._await_state(call.state_dir, pid)

    def _await_state(self, state_dir: str, runc_pid: int) -> None:
        self._awaiting[state_dir] = runc_pid
        self._arm(state_dir)

    def _arm(self, state_dir: str) -> None:
        """Watch the way down to ``state_dir/state.json`` from the deepest existing level.

        A ``--root`` nobody has used yet does not exist: runc creates it (mkdir -p)
        on the way. Each creation below the deepest watched directory re-arms this,
        and every watch is followed by a look, because what it waits for may have
        appeared just before the watch existed.
        """
        root = os.path.dirname(state_dir)
        top = root
        while not os.path.isdir(top) and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        level = top
        for part in [""] + os.path.relpath(root, top).split(os.sep):
            if part not in ("", "."):
                level = os.path.join(level, part)
            if not self._watch(level, _IN_ROOT_MASK):
                return
        # Both watches, because the state file may be closed before the fanotify
        # mark exists and renamed to state.json after it (then only inotify's
        # IN_MOVED_TO tells), or closed after the mark (then fanotify hands us the
        # file even if it is deleted before we read it).
        if self._watch(state_dir, _IN_DIR_MASK) and self._mark_state_dir(state_dir):
            self._try_state(state_dir)

    def _mark_state_dir(self, state_dir: str) -> bool:
        """Have every file closed after writing in ``state_dir`` reported *with an fd*.

        runc writes ``state-NNN``, closes it, renames it to state.json, and for a
        short-lived `runc run` deletes the directory a few ms later. An inotify
        event only names the file, which may be gone by the time we read it; a
        fanotify event holds the file open, so the state is readable however late
        the recorder gets to it.
        """
        if state_dir in self._marked:
            return True
        try:
            _sys.fanotify_mark(
                self._fan_state, _sys.FanMark.ADD | _sys.FanMark.DONT_FOLLOW | _sys.FanMark.ONLYDIR,
                _sys.FanEvent.CLOSE_WRITE | _sys.FanEvent.EVENT_ON_CHILD, state_dir,
            )
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("runctrace: cannot watch %s: %s", state_dir, err.strerror)
            return False
        self._marked.add(state_dir)
        return True

    def _unwatch(self, path: str) -> None:
        wd = self._path_wd.pop(path, None)
        if wd is not None:
            self._wd_path.pop(wd, None)
            _sys.inotify_rm_watch(self._ino, wd)

    def _unmark_state_dir(self, state_dir: str) -> None:
        if state_dir in self._marked:
            self._marked.discard(state_dir)
            try:
                _sys.fanotify_mark(
                    self._fan_state, _sys.FanMark.REMOVE | _sys.FanMark.DONT_FOLLOW | _sys.FanMark.ONLYDIR,
                    _sys.FanEvent.CLOSE_WRITE | _sys.FanEvent.EVENT_ON_CHILD, state_dir,
                )
            except OSError:
                pass  # the directory is gone; the kernel dropped its mark with it

    def _read_state_events(self) -> None:
        while True:
            try:
                buf = os.read(self._fan_state, 64 * 1024)
            except BlockingIOError:
                return
            for rec in _sys.decode_fanotify(buf):
                if rec.mask & _sys.FanEvent.Q_OVERFLOW:
                    self.stats.lost += 1
                    continue
                if rec.fd == _sys.FAN_NOFD:
                    continue
                try:
                    path = os.readlink(f"/proc/self/fd/{rec.fd}").removesuffix(" (deleted)")
                    state_dir, name = os.path.split(path)
                    if name.startswith("state") and state_dir in self._awaiting:
                        state, _err = read_state_fd(rec.fd, path)
                        if state is not None:
                            self._state_found(state_dir, state)
                finally:
                    os.close(rec.fd)

    def _watch(self, path: str, mask: int) -> bool:
        if path in self._path_wd:
            return True
        try:
            wd = _sys.inotify_add_watch(self._ino, path, mask)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("runctrace: cannot watch %s: %s", path, err.strerror)
            return False
        self._wd_path[wd] = path
        self._path_wd[path] = wd
        return True

    def _mark_binary(self, path: str) -> None:
        # An inode mark (no FAN_MARK_MOUNT): only this file's execs reach us.
        _sys.fanotify_mark(self._fan, _sys.FanMark.ADD, _sys.FanEvent.OPEN_EXEC, path)

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
                    self._mark_binary(binary.path)
                except OSError as err:
                    log.warning("runctrace: cannot watch new %s: %s", binary.path, err.strerror)
                    continue
                self._by_inode[key] = binary.path
                log.info("runctrace: %s was replaced; watching the new file", binary.path)
        self.binaries = binaries

    def _read_inotify(self) -> None:
        while True:
            try:
                buf = os.read(self._ino, 64 * 1024)
            except BlockingIOError:
                return
            for rec in _sys.decode_inotify(buf):
                if rec.mask & _sys.In.Q_OVERFLOW:
                    self.stats.lost += 1
                    for state_dir in list(self._awaiting):
                        self._try_state(state_dir)
                    continue
                if rec.mask & _sys.In.IGNORED:  # the directory is gone (runc delete)
                    path = self._wd_path.pop(rec.wd, None)
                    if path is not None:
                        self._path_wd.pop(path, None)
                    continue
                base = self._wd_path.get(rec.wd)
                if base is None:
                    continue
                path = os.path.join(base, rec.name)
                if rec.name in self._bin_dirs.get(base, ()):
                    self._refresh_binaries()
                elif base in self._awaiting:
                    if rec.name == "state.json":
                        self._try_state(base)
                elif rec.mask & (_sys.In.CREATE | _sys.In.MOVED_TO):
                    # a container's state dir, a runc root, or a level above it appeared
                    for state_dir in [d for d in self._awaiting if d == path or d.startswith(path + "/")]:
                        self._arm(state_dir)

    def _try_state(self, state_dir: str) -> None:
        runc_pid = self._awaiting.get(state_dir)
        call = self._calls.get(runc_pid) if runc_pid is not None else None
        if call is None or call.resolved:
            return
        state, err = read_state(state_dir)
        if state is not None:  # else not written yet: the state-file event will tell
            self._state_found(state_dir, state)

    def _state_found(self, state_dir: str, state: dict) -> None:
        call = self._calls.get(self._awaiting.get(state_dir, -1))
        self._finish_state_wait(state_dir)
        if call is not None and not call.resolved:
            self._resolve_container(call, state["init_process_pid"], state, None)

    def _finish_state_wait(self, state_dir: str) -> None:
        self._awaiting.pop(state_dir, None)
        self._unwatch(state_dir)
        self._unmark_state_dir(state_dir)

    def _on_runc_exit(self, call: _Call, status: int) -> None:
        state_dir = call.call.state_dir
        if not call.resolved and state_dir in self._awaiting:
            # The state file's event may still be queued behind this exit.
            self._read_inotify()
            self._read_state_events()
        if call.resolved:
            return
        code, _sig = _sys.decode_wait_status(status)
        if code != 0:
            # runc failed: no container was made (runc removes its state on failure).
            self._finish_state_wait(state_dir)
            self.stats.failed_creates += 1
            return
        state, state_err = read_state(state_dir)
        self._finish_state_wait(state_dir)
        pid, err = None, None
        if call.call.pid_file:
            pid, err = read_pid_file(call.call.pid_file)
        if pid is None and state is not None:
            pid = state["init_process_pid"]
        if pid is None:
            # `runc run` whose container came and went before its state could be
            # read (e.g. the recorder was starved of CPU). Report it, PID unknown.
            err = "; ".join(e for e in (err, state_err, "container ended before its PID could be read") if e)
        self._resolve_container(call, pid, state, err)

    # ------------------------------------------------------------------ containers

    def _resolve_container(
        self, call: _Call, pid: Optional[int], state: Optional[dict], error: Optional[str]
    ) -> None:
        call.resolved = True
        rc = call.call
        known = self._containers.get(pid) if pid is not None else None
        if known is not None and known.container_id == rc.container_id:
            return  # already found on disk by a resync
        bundle = rc.bundle or (state_bundle(state) if state else None)
        config, config_err = read_config(bundle)
        errors = [e for e in (error, config_err) if e]
        container = _Container(rc.container_id, pid, bundle, config, call.runtime, rc.root, rc.argv, call.caller)
        container.enrich()
        # The add is stamped with runc's own creation time, so it precedes the remove
        # even when the recorder saw the container late.
        created = rfc3339_to_ns(state.get("created")) if state else None
        self._emit(self._event(EventType.ADD, container, error="; ".join(errors) or None, when_ns=created or call.seen_ns))
        if pid is None:
            self._emit_remove(container, None, _now_ns())
            return
        expected_start = state.get("init_process_start") if state else None
        self._watch_pid(container, expected_start)

    def _watch_pid(self, container: _Container, expected_start: Optional[int]) -> None:
        ticks = process_start_ticks(container.pid)
        if ticks is not None and (expected_start is None or ticks == expected_start):
            self._containers[container.pid] = container
            return
        # Already gone (or the PID now belongs to another process). Its exit may be
        # queued on the connector socket still: drain it before deciding.
        self._containers[container.pid] = container
        self._read_connector()
        if container.pid in self._containers:  # not among the queued exits either
            del self._containers[container.pid]
            status = self._recent_exit.get(container.pid)
            err = None if status is not None else "exited before it was watched; exit status unknown"
            self._emit_remove(container, status, _now_ns(), error=err)

    def _emit_remove(
        self, container: _Container, status: Optional[int], when_ns: int, error: Optional[str] = None
    ) -> None:
        code, sig = _sys.decode_wait_status(status) if status is not None else (None, None)
        event = self._event(EventType.REMOVE, container, error=error, when_ns=when_ns)
        event.exit_code, event.signal = code, sig
        event.started_ns = container.added_ns
        self._emit(event)

    def _event(self, kind: EventType, c: _Container, *, error=None, when_ns=None) -> ContainerEvent:
        when_ns = when_ns or _now_ns()
        if kind is not EventType.REMOVE:
            c.added_ns = when_ns
        return ContainerEvent(
            type=kind,
            container_id=c.container_id,
            container_pid=c.pid,
            container_config=c.config,
            bundle=c.bundle,
            time_ns=when_ns,
            backend=self.name,
            runtime=c.runtime,
            runtime_root=c.root,
            runtime_args=c.args,
            error=error,
            caller=c.caller,
            **c.info,
        )

    def _serve_requests(self) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        while self._requests:
            request = self._requests.popleft()
            if request == "discover":
                self._sync_from_disk(EventType.INITIAL)
                continue
            container_id, pid = request
            self._watch_pid(_Container(container_id, pid, None, None, None, None), None)

    def discover_running(self) -> None:
        """Emit an INITIAL event for every container runc runs now, and watch it."""
        self._requests.append("discover")
        os.eventfd_write(self._wake, 1)

    def _sync_from_disk(self, kind: EventType) -> None:
        """Report running containers this notifier does not know yet (see discovery.py)."""
        in_flight = {c.call.state_dir for c in self._calls.values() if not c.resolved}
        for found in running_containers(expand_roots(self._roots)):
            known = self._containers.get(found.pid)
            if (known is not None and known.container_id == found.container_id) or found.state_dir in in_flight:
                continue
            bundle = state_bundle(found.state)
            config, config_err = read_config(bundle)
            container = _Container(found.container_id, found.pid, bundle, config, None, found.root)
            container.enrich()
            late = "found in runc's state after its runc call was missed" if kind is EventType.ADD else None
            error = "; ".join(e for e in (late, config_err) if e) or None
            created = rfc3339_to_ns(found.state.get("created"))
            self._emit(self._event(kind, container, error=error, when_ns=created))
            self._watch_pid(container, found.state.get("init_process_start"))

    def _expire_pending(self) -> None:
        if not self._pending_exec:
            return
        deadline = time.monotonic() - _PENDING_EXEC_TIMEOUT_S
        for pid, (when, _rt) in list(self._pending_exec.items()):
            if when < deadline:
                del self._pending_exec[pid]
                self.stats.missed += 1
