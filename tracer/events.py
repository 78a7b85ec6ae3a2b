"""The one event type every backend produces and every consumer reads."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional


class EventType(str, enum.Enum):
    """What happened to a container.

    ``ADD``: runc created it (``create``, ``run`` or ``restore``); its init process exists.
    ``INITIAL``: it was already running when the notifier started (found on disk).
    ``REMOVE``: its init process exited; the container is no longer running.
    """

    ADD = "add"
    INITIAL = "initial"
    REMOVE = "remove"

    def __str__(self) -> str:
        return self.value


@dataclass
class ContainerEvent:
    """A container starting or ending, as a notifier saw it.

    The first five fields follow Inspektor Gadget's ``runcfanotify.ContainerEvent``;
    the rest say when, how it was seen, and what could not be resolved.
    """

    type: EventType
    container_id: str
    container_pid: Optional[int]
    container_config: Optional[dict[str, Any]]
    bundle: Optional[str]
    time_ns: int  # wall clock (CLOCK_REALTIME) nanoseconds when the event was observed
    backend: str  # "fanotify", "bcc", or "fake"
    runtime: Optional[str] = None  # path of the runc binary that was executed
    runtime_root: Optional[str] = None  # runc's --root (state directory)
    runtime_args: list[str] = field(default_factory=list)  # runc's argv, as executed
    exit_code: Optional[int] = None  # REMOVE only: the init's exit code, if it exited
    signal: Optional[int] = None  # REMOVE only: the signal that killed the init
    started_ns: Optional[int] = None  # REMOVE only: time_ns of this container's add event
    manager: Optional[str] = None  # containerd, docker, cri-o, conmon or by-hand (enrich.py)
    caller: Optional[str] = None  # command name of the process that ran runc
    mntns: Optional[int] = None  # namespace inode numbers of the container's init
    pidns: Optional[int] = None
    netns: Optional[int] = None
    cgroup: Optional[str] = None  # cgroup path of the container's init
    # Why a field above is empty: unreadable spec, missing bundle, bad pid file, ...
    # Several problems are joined with "; ". None when everything resolved.
    error: Optional[str] = None

    def describe(self) -> str:
        """One human line, as ``runctrace record`` prints it."""
        pid = self.container_pid if self.container_pid is not None else "?"
        line = f"{self.type.value:<7} {self.container_id} pid={pid}"
        if self.type is not EventType.REMOVE:
            args = ((self.container_config or {}).get("process") or {}).get("args") or []
            if args:
                line += " args=" + " ".join(str(a) for a in args)[:80]
        else:
            if self.exit_code is not None:
                line += f" exit={self.exit_code}"
            if self.signal is not None:
                line += f" signal={self.signal}"
        if self.error:
            line += f"  [{self.error}]"
        return line
