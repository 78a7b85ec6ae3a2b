"""Find containers runc is already running, from runc's own state directories.

Used at start (``initial`` events) and after the recorder fell behind (a runc exec
whose arguments were gone before they could be read): what is still running is
then found from disk, so no *running* container is ever missing from a recording.
No daemon socket is needed: runc keeps ``<root>/<id>/state.json`` for every
container until ``runc delete``.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

from runctrace.runc.proc import process_start_ticks
from runctrace.runc.files import read_state

# runc's default root, then the roots of the managers that drive runc:
# containerd (one per namespace), Docker (likewise), and k3s' embedded containerd.
DEFAULT_ROOTS = (
    "/run/runc",
    "/run/containerd/runc/*",
    "/run/docker/runtime-runc/*",
    "/run/k3s/containerd/runc/*",
)


@dataclass(frozen=True)
class RunningContainer:
    root: str
    container_id: str
    pid: int
    state: dict[str, Any]

    @property
    def state_dir(self) -> str:
        return os.path.join(self.root, self.container_id)


def expand_roots(extra: Iterable[str] = ()) -> list[str]:
    out: list[str] = []
    for pattern in [*DEFAULT_ROOTS, *extra]:
        for path in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
            if path not in out and os.path.isdir(path):
                out.append(path)
    return out


def running_containers(roots: Iterable[str]) -> Iterator[RunningContainer]:
    """Containers whose init process is alive now (its start time matches runc's record)."""
    for root in roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in sorted(names):
            state, _err = read_state(os.path.join(root, name))
            if state is None:
                continue
            pid = state["init_process_pid"]
            ticks: Optional[int] = process_start_ticks(pid)
            if ticks is None or ticks != state.get("init_process_start", ticks):
                continue  # stopped (waiting for `runc delete`) or PID reused
            yield RunningContainer(root, state.get("id") or name, pid, state)
