"""The containers a tracker has reported, and the events that say so.

:class:`Container` holds what is known of one container; :class:`Running` turns
it into its ADD (or INITIAL) and REMOVE events, keeps the running ones by PID
until their init ends, and has the backend watch for that end. The tracker
(:mod:`runctrace.runc.tracker`) decides *when*; this module decides *what* an
event carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from runctrace import _sys
from runctrace.events import (
    FLAG_ARGS_DIFFER, FLAG_CONFIG_FOREIGN, FLAG_CONFIG_LINKED, FLAG_NON_ROOT_CALLER, ContainerEvent, EventType,
    process_args,
)
from runctrace.runc.enrich import manager_of
from runctrace.runc.files import SpecFile
from runctrace.runc.proc import cgroup_of, namespaces, read_stat
from runctrace.runc.spec import MAX_FIELD_CHARS, MAX_FIELD_ITEMS, trim_config

# the backend's way to have the tracker's pid_exited called when container.pid
# ends: (container, its init's start time if known, the runc call that made it)
Watch = Callable[["Container", Optional[int], Any], None]


@dataclass
class Container:
    """A container the tracker reported: what its events say about it."""

    container_id: str
    pid: Optional[int]
    bundle: Optional[str]
    config: Optional[dict[str, Any]]
    runtime: Optional[str]
    root: Optional[str]
    args: list[str] = field(default_factory=list)
    caller: Optional[str] = None
    added_ns: int = 0  # time_ns of its ADD (or INITIAL) event
    info: dict[str, Any] = field(default_factory=dict)  # manager, namespaces, cgroup
    start_ticks: Optional[int] = None  # its init's start time, to tell it from a reused PID
    # where its spec came from, and who ran runc (event fields of the same names)
    provenance: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # events.FLAG_*
    args_checked: bool = False  # its init's argv was compared with the spec's (once: at its first exec)

    def check_args(self, argv: Optional[list[str]]) -> None:
        """Flag the container if its init's argv at its program's exec is not the
        spec's ``process.args`` (runc execs exactly those).

        ``argv`` must be what the kernel held *at that exec*: the eBPF backend
        copies it there. Read from /proc a moment later, it is often the next
        program's (an entrypoint ending in ``exec "$@"`` replaces itself within a
        millisecond), so the fanotify backend, which learns of the exec only
        afterwards, passes None: unknown, not compared."""
        if argv is None or self.args_checked:
            return  # (unknown: a later exec of the same process is not its start either way)
        self.args_checked = True
        expected = process_args(self.config)
        if self.config is not None and self.config.get("truncated"):
            # the kept args were cut to their bounds (trim_config): compare what was kept
            if len(expected) == MAX_FIELD_ITEMS:
                argv = argv[:MAX_FIELD_ITEMS]
            argv = [a[:MAX_FIELD_CHARS] if len(e) == MAX_FIELD_CHARS else a for a, e in zip(argv, expected)] + argv[len(expected):]
        if self.config is not None and argv != expected and FLAG_ARGS_DIFFER not in self.flags:
            self.flags.append(FLAG_ARGS_DIFFER)

    def note_spec(self, spec: SpecFile, runc_uid: Optional[int], errors: list[str]) -> None:
        """Where this container's spec came from, who ran runc, and the flags they
        call for. (Whether config.json changed since is the tracker's look.)"""
        if spec.error:
            errors.append(spec.error)
        self.provenance = {
            "config_sha256": spec.sha256, "config_uid": spec.uid, "config_nlink": spec.nlink, "runc_uid": runc_uid,
        }
        if runc_uid not in (0, None):
            self.flags.append(FLAG_NON_ROOT_CALLER)
        if spec.refused == "hardlinked":
            self.flags.append(FLAG_CONFIG_LINKED)
        elif spec.refused == "foreign-owner":
            self.flags.append(FLAG_CONFIG_FOREIGN)

    def enrich(self, known_namespaces: Optional[dict[str, int]] = None) -> None:
        """Read what only the living init can tell: call while it still runs.

        ``known_namespaces``: the init's namespaces, and its cgroup if it has the
        key, as the backend read them while it was sure to be alive (the eBPF
        backend reads namespaces in the kernel as the init execs; fanotify reads
        both at the init's rename), instead of /proc's now."""
        annotations = (self.config or {}).get("annotations")
        self.info = {"manager": manager_of(self.root, self.caller, annotations)}
        if self.pid is not None:
            self.info.update(known_namespaces or namespaces(self.pid))
            if "cgroup" not in self.info:
                self.info["cgroup"] = cgroup_of(self.pid)


class Running:
    """The containers reported and not yet ended, by their init's PID, and their events.

    ``watch`` is the backend's: it arranges for the tracker's ``pid_exited`` when a
    tracked container's init ends.
    """

    def __init__(self, backend: str, emit: Callable[[ContainerEvent], None], watch: Watch) -> None:
        self.backend = backend
        self._emit = emit
        self._watch = watch
        self.by_pid: dict[int, Container] = {}  # init pid -> container, until it ends

    def track(self, container: Container, expected_start: Optional[int], rexec: Any) -> None:
        """Keep ``container`` as running and have the backend watch its init's end."""
        if expected_start is None:
            st = read_stat(container.pid)
            expected_start = st.start if st is not None and st.state not in ("Z", "X", "x") else None
        container.start_ticks = expected_start
        old = self.by_pid.get(container.pid)
        if old is not None and old is not container and old.container_id != container.container_id:
            # its PID went to another container before its exit came (an exit the
            # kernel reports late, or lost): it ended, and must not take this one's
            self.remove(old, None, None, "its PID was reused before its exit was seen; exit status unknown")
        self.by_pid[container.pid] = container
        self._watch(container, expected_start, rexec)

    def add(self, kind: EventType, container: Container, error: Optional[str], when_ns: Optional[int]) -> None:
        event = self.event(kind, container, error=error, when_ns=when_ns)
        container.added_ns = event.time_ns
        self._emit(event)
        # The whole spec goes out once, with the add; what a running container
        # keeps of it is bounded, however large the spec (spec.trim_config).
        container.config = trim_config(container.config)

    def remove(
        self, container: Container, status: Optional[int], when_ns: Optional[int], error: Optional[str]
    ) -> None:
        """``status``: a wait(2) status, None if unknown. A REMOVE is never stamped before its ADD."""
        code, sig = _sys.decode_wait_status(status) if status is not None else (None, None)
        when_ns = max(when_ns or time.time_ns(), container.added_ns)
        event = self.event(EventType.REMOVE, container, error=error, when_ns=when_ns)
        event.exit_code, event.signal = code, sig
        event.started_ns = container.added_ns or None
        self._emit(event)

    def event(
        self, kind: EventType, c: Container, *, error: Optional[str] = None, when_ns: Optional[int] = None
    ) -> ContainerEvent:
        return ContainerEvent(
            type=kind,
            container_id=c.container_id,
            container_pid=c.pid,
            container_config=c.config,
            bundle=c.bundle,
            time_ns=when_ns or time.time_ns(),
            backend=self.backend,
            runtime=c.runtime,
            runtime_root=c.root,
            runtime_args=c.args,
            error=error,
            caller=c.caller,
            flags=list(c.flags),
            **c.provenance,
            **c.info,
        )
