"""The one event type every backend produces and every consumer reads."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

from runctrace.safetext import printable


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
    # Where the recorded spec came from (runc.files.SpecFile), and who ran runc: the
    # spec recorded is the one read when runc's arguments named the bundle.
    config_sha256: Optional[str] = None  # of config.json's bytes as read
    config_uid: Optional[int] = None  # config.json's owner
    config_nlink: Optional[int] = None  # its hard links
    runc_uid: Optional[int] = None  # real uid of the runc process: its caller's
    # What about this container deserves a second look (FLAGS below).
    flags: list[str] = field(default_factory=list)
    # Why a field above is empty: unreadable spec, missing bundle, bad pid file, ...
    # Several problems are joined with "; ". None when everything resolved.
    error: Optional[str] = None

    def describe(self) -> str:
        """One human line, as ``runctrace record`` prints it. Everything that came
        from outside is shown escaped (:func:`safetext.printable`): a container's
        args could otherwise print a line of their own, or clear the screen."""
        pid = self.container_pid if self.container_pid is not None else "?"
        line = f"{self.type.value:<7} {printable(self.container_id)} pid={pid}"
        if self.type is not EventType.REMOVE:
            args = process_args(self.container_config)
            if args:
                line += " args=" + printable(" ".join(args)[:80])
        else:
            if self.exit_code is not None:
                line += f" exit={self.exit_code}"
            if self.signal is not None:
                line += f" signal={self.signal}"
        if self.flags:
            line += " flags=" + ",".join(self.flags)
        if self.error:
            line += f"  [{printable(self.error)}]"
        return line


def process_args(config: Any) -> list[str]:
    """The spec's ``process.args`` as strings, whatever shape the spec has."""
    process = config.get("process") if isinstance(config, dict) else None
    args = process.get("args") if isinstance(process, dict) else None
    return [str(a) for a in args] if isinstance(args, list) else []


# Flags: what about a container deserves a second look. Each is set by the
# tracker (runc/tracker.py) and stored in the row's ``flags`` column.
FLAG_NON_ROOT_CALLER = "non-root-caller"  # runc was run by a user other than root
FLAG_CONFIG_CHANGED = "config-changed"  # config.json was replaced or rewritten after it was read
FLAG_CONFIG_LINKED = "config-hardlinked"  # config.json has other hard links: content not recorded
FLAG_CONFIG_FOREIGN = "config-foreign-owner"  # owned by neither root nor runc's caller: not recorded
FLAG_ARGS_DIFFER = "args-differ"  # the init's argv at its exec was not the spec's process.args
FLAG_FIELDS_TRUNCATED = "fields-truncated"  # a typed spec column was cut to its bound
