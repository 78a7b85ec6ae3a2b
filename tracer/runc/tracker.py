"""From "a runc process started / ended" to container ADD and REMOVE events.

This is the part every backend shares. A backend only tells the :class:`Tracker`
what its kernel mechanism saw:

* :meth:`Tracker.runc_started` when a runc process has been executed, with its argv
  and working directory;
* :meth:`Tracker.runc_exited` when that process ended, with its wait status;
* :meth:`Tracker.init_started` when that runc's container init starts its program,
  if the backend can see it (both do: the eBPF backend from its tracepoints, the
  fanotify backend from the process-events connector);
* :meth:`Tracker.pid_exited` when a watched container's init ended;

and gives the tracker one function, ``watch(container, expected_start, call)``, that
arranges for ``pid_exited`` to be called when ``container.pid`` exits (each backend
learns about exits its own way: the process-events connector, a BPF map).
:meth:`Tracker.discover` finds containers runc already runs (``INITIAL`` events).

Where the container's PID comes from:

* for a ``runc run``, when the backend reports its init starting its program
  (:meth:`Tracker.init_started`; both backends see that in the kernel);
* the ``--pid-file``, read when ``runc create`` exits (what containerd's shim
  reads); runc writes it before it exits, and only on success;
* otherwise ``<root>/<id>/state.json``'s ``init_process_pid``, taken as soon as runc
  writes the file (see :class:`StateDirWatcher`: inotify, and fanotify events that
  hand over the file open), so that a foreground ``runc run``, which keeps running
  as long as its container, is resolved at once; read at runc's exit as a fallback.
  A state.json whose init started before this runc did is a stopped container's
  leftover under the same ID, and is not taken.

``init_process_start`` from state.json is compared with ``/proc/PID/stat`` so a
reused PID is never taken for the container. An ADD is stamped with runc's own
``created`` time when state.json gives it, and a REMOVE is never stamped before
its ADD.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from runctrace import _sys
from runctrace.backends.base import Stats, log
from runctrace.events import FLAG_CONFIG_CHANGED, ContainerEvent, EventType
from runctrace.runc.args import RuncCall, parse_runc_args
from runctrace.runc.containers import Container, Running, Watch
from runctrace.runc.discovery import expand_roots, running_containers
from runctrace.runc.proc import comm, mono_to_wall_ns, process_ended, process_uid, read_stat
from runctrace.runc.statewatch import StateDirWatcher
from runctrace.safetext import printable
from runctrace.runc.files import (
    SpecFile, load_config, read_pid_file, read_state, rfc3339_to_ns, state_bundle,
)


@dataclass
class RuncExec:
    """A runc create/run/restore whose container is not resolved yet."""

    pid: int  # the runc process
    call: RuncCall
    runtime: str  # path of the runc binary
    started_ns: Optional[int] = None  # CLOCK_MONOTONIC when its exec was seen
    caller: Optional[str] = None  # who ran runc (its parent's command name)
    start_ticks: Optional[int] = None  # runc's start time (clock ticks), from /proc/PID/stat
    # (its init's pid, that init's namespaces and cgroup), if the backend read them
    # while the init was sure to be alive: whichever of the init's exec and runc's
    # exit resolves the call, the container may have ended by then
    init_seen: Optional[tuple[int, dict]] = None
    resolved: bool = False
    uid: Optional[int] = None  # runc's real uid: its caller's
    spec: Optional[SpecFile] = None  # config.json, read as soon as the arguments named the bundle


def parse_call(argv: list[str], cwd: Optional[str], cwd_may_be_bundle: bool = False) -> RuncCall:
    """Parse runc's argv, given the working directory read from /proc/PID/cwd.

    runc 1.1 makes ``--root`` and ``--pid-file`` absolute and *then* chdirs into
    ``--bundle`` (and only when ``--bundle`` is given). A cwd read from /proc after
    that chdir is the bundle itself, not the directory runc was started in. When the
    caller knows the read may have come after the chdir (``cwd_may_be_bundle``), the
    files tell: if ``--bundle`` resolved against the cwd holds a config.json (or the
    cwd is not an absolute ``--bundle``), runc has not moved yet and the paths stand.
    Otherwise a relative ``--bundle`` is taken to be that cwd, and a relative
    ``--pid-file``, relative to a directory no longer known, is dropped (state.json
    is used instead).
    """
    call = parse_runc_args(argv, cwd)
    bundle_flag = call.command_flags.get("bundle")
    if not cwd_may_be_bundle or not cwd or not bundle_flag or not call.creates_container:
        return call  # no chdir happened, or it does not matter
    if not os.path.isabs(bundle_flag):
        if os.path.isfile(os.path.join(cwd, bundle_flag, "config.json")):
            return call  # not moved yet: the cwd is the caller's
        call.bundle = os.path.normpath(cwd)
    elif os.path.realpath(bundle_flag) != os.path.normpath(cwd):
        return call  # not in its bundle yet (/proc shows the cwd with symlinks resolved)
    pid_file_flag = call.command_flags.get("pid-file")
    if pid_file_flag and not os.path.isabs(pid_file_flag):
        call.pid_file = None
    root_flag = call.global_flags.get("root")
    if root_flag and not os.path.isabs(root_flag):
        log.warning(
            "runctrace: runc %s: relative --root %s, and runc changed directory before its "
            "cwd could be read; its state directory may be wrong", printable(call.container_id), printable(root_flag),
        )
    return call


def _state_of(state: dict, rexec: RuncExec) -> bool:
    """Is ``state`` this runc call's, not a stopped container's left under the same ID?

    ``runc run ID`` fails ("ID already exists") while the old container's
    state.json is still there; taking it would report a container that never ran.
    The container this call makes has an init that started after runc itself.
    """
    init_start = state.get("init_process_start")
    if not isinstance(init_start, int) or rexec.start_ticks is None:
        return True
    return init_start >= rexec.start_ticks


def _read_state_of(rexec: RuncExec) -> tuple[Optional[dict], Optional[str]]:
    """The state.json of ``rexec``'s container: its head only, unless the bundle
    must come from runc's labels (the rest of the file is a copy of the spec)."""
    return read_state(rexec.call.state_dir, head_only=bool(rexec.call.bundle))



_F = TypeVar("_F", bound=Callable[..., Any])


def _total(method: _F) -> _F:
    """Handling one event is total: whatever goes wrong in it, the loop goes on.

    Every entry point a backend calls is wrapped in this. The stages that build an
    event (reading the spec, enriching) have guards of their own
    (:meth:`Tracker._stage`), so a failure there still gives the event, with an
    ``error``; this is the last line, for a bug or an input no parser foresaw:
    the call is logged and counted in ``stats.errors``, and nothing else is lost.
    """

    @functools.wraps(method)
    def guarded(self: "Tracker", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as err:
            self._failed(f"{method.__name__}{printable(repr(args))[:200]}", err)
            return None

    return guarded  # type: ignore[return-value]


class Tracker:
    """runc calls in flight, the containers they made, and the events they turn into.

    One per notifier. Not thread-safe: call it from the notifier's event-loop thread
    only. ``watch(container, expected_start, call)`` is the backend's way to have
    :meth:`pid_exited` called when ``container.pid`` ends (``call`` is the runc call
    that made the container, None for one found otherwise).
    """

    def __init__(
        self, backend: str, emit: Callable[[ContainerEvent], None], stats: Stats, watch: Watch,
        *, sees_inits: bool = False,
    ) -> None:
        """``sees_inits``: the backend calls :meth:`init_started` when a `runc run`'s
        init starts its program (both backends see it in the kernel), so such a
        call needs no watch on runc's state files."""
        self.backend = backend
        self._emit = emit
        self._stats = stats
        self._watch = watch
        self._sees_inits = sees_inits
        self.states = StateDirWatcher()
        self.calls: dict[int, RuncExec] = {}  # runc pid -> call
        self.running = Running(backend, emit, watch)
        self.containers = self.running.by_pid  # init pid -> container, until it ends
        self.roots: set[str] = set()  # every runc --root seen, for discovery
        self._awaiting: dict[str, int] = {}  # state dir -> runc pid

    def close(self) -> None:
        self.states.close()

    def _failed(self, what: str, err: BaseException) -> None:
        self._stats.errors += 1
        log.error("runctrace: %s failed; the recorder carries on: %r", what, err, exc_info=err)

    def _stage(self, what: str, errors: list[str], fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        """One stage of building an event: its failure becomes an ``error`` on the event."""
        try:
            return fn(*args)
        except Exception as err:
            self._failed(what, err)
            errors.append(f"{what} failed: {err!r}")
            return default

    # ------------------------------------------------------------ what backends report

    @_total
    def runc_started(
        self, pid: int, argv: list[str], cwd: Optional[str], runtime: str,
        *, started_ns: Optional[int] = None, cwd_may_be_bundle: bool = False,
    ) -> Optional[RuncExec]:
        """A runc process was executed. Returns the call if it makes a container.

        ``started_ns``: CLOCK_MONOTONIC time of the exec, if the backend knows it.
        """
        call = parse_call(argv, cwd, cwd_may_be_bundle)
        if not call.creates_container:
            return None  # start, delete, kill, init, state, a bad command line...
        st = read_stat(pid)
        # one read of /proc/PID/stat gives both runc's start time and its caller
        rexec = RuncExec(pid, call, runtime, started_ns, comm(st.ppid) if st else None, st.start if st else None)
        rexec.uid = process_uid(pid)
        if call.bundle:
            # Now, before runc itself gets to it (Go's runtime starts first): a hook
            # that swaps config.json after runc read it must not change what is
            # recorded. Its failure is the event's error, at resolve time.
            failed: list[str] = []
            rexec.spec = self._stage("reading config.json", failed, load_config, call.bundle, rexec.uid,
                                     default=None) or SpecFile(None, "; ".join(failed))
        old = self.calls.get(pid)
        if old is not None:  # the same process exec'd runc again (a wrapper did)
            self._stop_waiting(old)
        self.calls[pid] = rexec
        self.roots.add(call.root)
        if self._needs_state_watch(call):
            self._awaiting[call.state_dir] = pid
            if self.states.expect(call.state_dir):
                self.try_state(call.state_dir)
        return rexec

    def _needs_state_watch(self, call: RuncCall) -> bool:
        """Take the PID from state.json as soon as runc writes it?

        Yes if there is no pid file to read when runc exits, or if runc stays (a
        foreground `run` lasts as long as its container). Not for a `run` when the
        backend reports its init (:meth:`init_started`): that says when and which.
        A create or restore still needs it: a create's init starts its program only
        at `runc start`, after this runc has exited, and a restored init never execs.
        """
        if call.pid_file is not None and not (call.command == "run" and not call.detach):
            return False
        return not (self._sees_inits and call.command == "run")

    @_total
    def read_states(self, fd: int) -> None:
        """One of the state watcher's fds (``states.fds()``) is readable."""
        overflows = self.states.overflows
        for state_dir, state in self.states.read(fd):
            self.try_state(state_dir, state)
        self._stats.lost += self.states.overflows - overflows

    @_total
    def try_state(self, state_dir: str, state: Optional[dict] = None) -> None:
        rexec = self.calls.get(self._awaiting.get(state_dir, -1))
        if rexec is None or rexec.resolved:
            return
        if state is None:
            state, _err = _read_state_of(rexec)
        if state is None or not _state_of(state, rexec):
            return  # not written yet (or a stale one); the next event or runc's exit will tell
        self._stop_waiting(rexec)
        self._resolve(rexec, state["init_process_pid"], state, None)

    def drain_states(self) -> None:
        """Handle state-file events already queued (before concluding a runc exit)."""
        for fd in self.states.fds():
            self.read_states(fd)

    @_total
    def init_started(
        self, runc_pid: int, init_pid: int, init_namespaces: Optional[dict[str, int]] = None,
        argv: Optional[list[str]] = None,
    ) -> None:
        """runc ``runc_pid``'s container init, ``init_pid``, is starting its program
        (in ``init_namespaces``, if the backend read them there as it execs; else
        ``RuncExec.init_seen``'s, if read earlier, or /proc's now).

        Both backends see this in the kernel, so a `runc run` needs no state-file
        watch: it is resolved here. state.json's head is read once, for runc's own
        creation time and the init's start time (the bundle is known from runc's
        arguments, so the rest, the spec, is not read); for a container that already
        ended it may be gone, and is not needed. If it is this call's and names
        another PID, runc's record wins.
        """
        rexec = self.calls.get(runc_pid)
        if rexec is None or rexec.resolved:
            return
        state, _err = _read_state_of(rexec)
        if state is not None and not _state_of(state, rexec):
            state = None  # a stopped container's, left under the same ID
        if state is not None and state["init_process_pid"] != init_pid:
            log.warning("runctrace: runc %d: the kernel saw init %d, runc's state says %d; using runc's",
                        runc_pid, init_pid, state["init_process_pid"])
            init_pid = state["init_process_pid"]
            init_namespaces = argv = None  # the kernel's init's, not this one's
        self._stop_waiting(rexec)
        self._resolve(rexec, init_pid, state, None, init_namespaces, init_argv=argv)

    @_total
    def init_exec(self, pid: int, argv: Optional[list[str]] = None) -> None:
        """A watched container's init exec'd its program (after `runc start`), with
        ``argv`` as the kernel saw it at that exec, if the backend captured it.
        Only the first is compared with the spec (a program may exec others)."""
        container = self.containers.get(pid)
        if container is not None and not container.args_checked:
            container.check_args(argv)

    @_total
    def runc_exited(self, pid: int, status: Optional[int], init_pid: Optional[int] = None) -> None:
        """A runc process ended; ``status`` is its wait(2) status, None if unknown.

        ``init_pid``: the container init that this runc started, if the backend saw
        it directly (the eBPF backend sees runc's init exec the container's
        program). It proves a container existed even when runc's status is not 0
        (a foreground `runc run` exits with its container's status), and gives the
        PID when state.json was gone before it could be read.
        """
        rexec = self.calls.get(pid)
        if rexec is not None and not rexec.resolved and rexec.call.state_dir in self._awaiting:
            self.drain_states()  # the state file's event may be queued behind this exit
        self.calls.pop(pid, None)
        if rexec is None or rexec.resolved:
            return
        code, sig = _sys.decode_wait_status(status) if status is not None else (None, None)
        if init_pid is None and (sig is not None or code not in (0, None)):
            # runc failed, or was killed: no container (runc removes its state on failure)
            self._stop_waiting(rexec)
            self._stats.failed_creates += 1
            return
        state, state_err = _read_state_of(rexec)
        if state is not None and not _state_of(state, rexec):
            state, state_err = None, "state.json is an older container's"
        self._stop_waiting(rexec)
        pid_, err = None, None
        if rexec.call.pid_file:
            pid_, err = read_pid_file(rexec.call.pid_file)
        if pid_ is None and state is not None:
            pid_, err = state["init_process_pid"], None  # the runtime's other record has it
        if pid_ is None and init_pid is not None:
            pid_, err = init_pid, None
        if pid_ is None:
            # `runc run` whose container came and went before its state could be
            # read (e.g. the recorder was starved of CPU). Report it, PID unknown.
            err = "; ".join(e for e in (err, state_err, "container ended before its PID could be read") if e)
        self._resolve(rexec, pid_, state, err)

    @_total
    def pid_exited(
        self, pid: int, status: Optional[int], when_ns: Optional[int] = None, error: Optional[str] = None
    ) -> bool:
        """A watched container's init ended: emit its REMOVE. False if ``pid`` is not watched.

        ``status`` is a wait(2) status, None if unknown; ``when_ns`` is when it
        ended, if the backend knows (a kernel time). A REMOVE is never stamped
        before its ADD.
        """
        container = self.containers.pop(pid, None)
        if container is None:
            return False
        self.running.remove(container, status, when_ns, error)
        return True

    @_total
    def watch_pid(self, container_id: str, pid: int) -> None:
        """A container found by other means (``add_watch_container_termination``)."""
        container = Container(container_id, pid, None, None, None, None)
        container.args_checked = True  # running already: its next exec is not its start
        self.running.track(container, None, None)

    @_total
    def sweep(self) -> None:
        """After the kernel dropped events: end what ended unseen.

        A container whose exit message was lost would otherwise stay "running"
        forever, and a runc call whose exit was lost would keep its watches and,
        once its PID is reused, take another process's exit for its own.
        """
        for pid, container in list(self.containers.items()):
            if process_ended(pid, container.start_ticks):
                self.pid_exited(pid, None, error="its exit was lost (kernel queue overflow); exit status unknown")
        for pid, rexec in list(self.calls.items()):
            if process_ended(pid, rexec.start_ticks):
                self.runc_exited(pid, None)

    @_total
    def resync(self) -> None:
        """After the kernel dropped events or a runc call went unread: end what ended
        unseen, then report what runs and is not known yet (as late ADDs)."""
        self.sweep()
        self.discover(EventType.ADD)

    @_total
    def discover(self, kind: EventType = EventType.INITIAL) -> None:
        """Emit ``kind`` for each container runc runs now that is not known yet, and watch it.

        ``INITIAL`` at start; ``ADD`` after runc calls were missed (the events name
        that in ``error``), so that no *running* container is missing.
        """
        in_flight = {r.call.state_dir for r in self.calls.values() if not r.resolved}
        for found in running_containers(expand_roots(self.roots)):
            known = self.containers.get(found.pid)
            if (known is not None and known.container_id == found.container_id) or found.state_dir in in_flight:
                continue
            bundle = state_bundle(found.state)
            errors = ["found in runc's state after its runc call was missed"] if kind is EventType.ADD else []
            try:  # runc made the state directory as its caller: the owner stands for the caller's uid
                caller_uid: Optional[int] = os.stat(found.state_dir).st_uid
            except OSError:
                caller_uid = None
            spec = self._stage("reading config.json", errors, load_config, bundle, caller_uid,
                               default=SpecFile(None, None))
            container = Container(found.container_id, found.pid, bundle, spec.config, None, found.root)
            container.args_checked = True  # running already: its next exec is not its start
            container.note_spec(spec, caller_uid, errors)
            self._stage("enriching", errors, container.enrich)
            self.running.add(kind, container, "; ".join(errors) or None, rfc3339_to_ns(found.state.get("created")))
            self.running.track(container, found.state.get("init_process_start"), None)

    # --------------------------------------------------------------------- internals

    def _note_spec(self, container: Container, spec: SpecFile, rexec: Optional[RuncExec], errors: list[str]) -> None:
        container.note_spec(spec, rexec.uid if rexec is not None else None, errors)
        if rexec is not None and self._stage("checking config.json again", errors, spec.changed, container.bundle):
            container.flags.append(FLAG_CONFIG_CHANGED)

    def _stop_waiting(self, rexec: RuncExec) -> None:
        state_dir = rexec.call.state_dir
        if self._awaiting.get(state_dir) == rexec.pid:
            del self._awaiting[state_dir]
            self.states.forget(state_dir)

    def _resolve(
        self, rexec: RuncExec, pid: Optional[int], state: Optional[dict], error: Optional[str],
        init_namespaces: Optional[dict[str, int]] = None, init_argv: Optional[list[str]] = None,
    ) -> None:
        rexec.resolved = True
        rc = rexec.call
        known = self.containers.get(pid) if pid is not None else None
        if known is not None and known.container_id == rc.container_id:
            rexec.spec = None  # (up to 16 MiB, kept by a foreground run as long as its container)
            return  # already reported by discover()
        errors = [error] if error else []
        bundle = rc.bundle or (state_bundle(state) if state else None)
        spec = rexec.spec if rexec.spec is not None and rc.bundle else None
        if spec is None:  # the bundle came from runc's state: read it now
            spec = self._stage("reading config.json", errors, load_config, bundle, rexec.uid,
                               default=SpecFile(None, None))
        container = Container(rc.container_id, pid, bundle, spec.config, rexec.runtime, rc.root, rc.argv, rexec.caller)
        self._note_spec(container, spec, rexec, errors)
        if init_namespaces is None and rexec.init_seen is not None and rexec.init_seen[0] == pid:
            init_namespaces = rexec.init_seen[1]
        self._stage("enriching", errors, container.enrich, init_namespaces)
        self._stage("comparing the init's argv", errors, container.check_args, init_argv)
        # Stamped with runc's own creation time (as the fanotify backend does), else
        # with when runc's exec was seen.
        created = rfc3339_to_ns(state.get("created")) if state else None
        seen = mono_to_wall_ns(rexec.started_ns) if rexec.started_ns is not None else None
        self.running.add(EventType.ADD, container, "; ".join(errors) or None, created or seen)
        rexec.spec = None  # the spec is the container's now (and trimmed once its add is out)
        if pid is None:
            self.running.remove(container, None, None, None)
            return
        expected_start = state.get("init_process_start") if state else None
        self.running.track(container, expected_start if isinstance(expected_start, int) else None, rexec)

