"""Helpers for the eBPF backend's tests: busybox bundles, runc calls, event waiting.

Kept apart from the shared conftest (another engineer's file) so the two never
clash: every fixture here starts with ``bcct_`` and every container ID with
``bcct-``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

from conftest import fd_count as fds, thread_count as threads  # noqa: F401 (re-exported)
from runctrace.workload import containers as workload
from runctrace.events import ContainerEvent, EventType

# Root tests fail without root, they are not skipped: the project's machines have it.
ROOT_ONLY = [pytest.mark.root]


def make_bundle(path: Path, args: list[str]) -> Path:
    """An OCI bundle at ``path`` running ``args`` in a static busybox root (runctrace.workload.containers)."""
    rootfs = workload.make_rootfs(path.parent / f"{path.name}-rootfs")
    return workload.make_bundle(path.parent, rootfs, args, name=path.name)


class Runc:
    """Runs runc; remembers every container ID it hands out, to force-delete them."""

    def __init__(self) -> None:
        self.made: list[tuple[str, Optional[str]]] = []

    def new_id(self, label: str, root: Optional[str] = None) -> str:
        cid = f"bcct-{label}-{uuid.uuid4().hex[:8]}"
        self.made.append((cid, root))
        return cid

    def __call__(self, *args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
        # Output to files, not pipes: a detached container inherits runc's stdout,
        # and reading a pipe to EOF would wait for the container to end.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(["runc", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            out.seek(0)
            proc.stdout = out.read().decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(f"runc {' '.join(args)} exited {proc.returncode}: {proc.stdout.strip()}")
        return proc

    def state_pid(self, cid: str, root: Optional[str] = None, timeout: float = 5.0) -> int:
        """The init PID runc reports, polling while someone else creates the container."""
        deadline = time.monotonic() + timeout
        root_args = ["--root", root] if root else []
        while time.monotonic() < deadline:
            res = self(*root_args, "state", cid, check=False)
            if res.returncode == 0:
                return json.loads(res.stdout)["pid"]
            time.sleep(0.005)
        raise AssertionError(f"container {cid} never appeared in runc state")

    def cleanup(self) -> None:
        for cid, root in self.made:
            self(*(["--root", root] if root else []), "delete", "--force", cid, check=False)


class Seen:
    """Events a (queue-mode) notifier delivered, with waiting by container ID."""

    def __init__(self, notifier) -> None:
        self.notifier = notifier
        self.events: list[ContainerEvent] = []

    def pump(self, timeout: float = 0.02) -> None:
        while (event := self.notifier.get(timeout=timeout)) is not None:
            self.events.append(event)
            timeout = 0

    def of(self, cid: str) -> list[ContainerEvent]:
        return [e for e in self.events if e.container_id == cid]

    def until_removed(self, cid: str, timeout: float = 10.0) -> list[ContainerEvent]:
        """Wait for ``cid``'s REMOVE, then a little longer for duplicates that must not come."""
        deadline = time.monotonic() + timeout
        while not any(e.type is EventType.REMOVE for e in self.of(cid)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no remove for {cid}; got {[e.describe() for e in self.events]}")
            self.pump()
        settle = time.monotonic() + 0.3
        while time.monotonic() < settle:
            self.pump()
        return self.of(cid)

    def lifecycle(self, cid: str, timeout: float = 10.0) -> tuple[ContainerEvent, ContainerEvent]:
        """Exactly one ADD then one REMOVE for ``cid``, for the same PID."""
        return self._one_lifecycle(self.until_removed(cid, timeout))

    def lifecycles(self, cids: list[str], timeout: float = 20.0) -> dict[str, tuple[ContainerEvent, ContainerEvent]]:
        """``lifecycle`` of containers that ran at once: the wait for duplicates
        comes once, after the last REMOVE, rather than once per container."""
        deadline = time.monotonic() + timeout
        for cid in cids[:-1]:
            while not any(e.type is EventType.REMOVE for e in self.of(cid)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no remove for {cid}; got {[e.describe() for e in self.events]}")
                self.pump()
        self.until_removed(cids[-1], max(deadline - time.monotonic(), 0.0))
        return {cid: self._one_lifecycle(self.of(cid)) for cid in cids}

    @staticmethod
    def _one_lifecycle(events: list[ContainerEvent]) -> tuple[ContainerEvent, ContainerEvent]:
        assert [e.type for e in events] == [EventType.ADD, EventType.REMOVE], [e.describe() for e in events]
        add, remove = events
        assert add.container_pid is not None and add.container_pid == remove.container_pid
        assert add.time_ns <= remove.time_ns
        return add, remove


@pytest.fixture
def bcct_runc():
    runc = Runc()
    try:
        yield runc
    finally:
        runc.cleanup()
