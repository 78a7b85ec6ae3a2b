"""Shared fixtures: real runc containers from a static busybox root filesystem.

Root-only tests carry the ``root`` marker. Everything they need (root, runc,
containerd, busybox-static, kernel headers) bootstrap.sh provides, so a missing piece
is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from runctrace.workload import containers as workload
from runctrace.errors import RunctraceError
from runctrace.events import ContainerEvent, EventType
from runctrace.workload.containers import PrivateContainerd, make_bundle, make_rootfs

# Root tests fail without root, they are not skipped: the project's machines have it.
ROOT_ONLY = [pytest.mark.root]


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("rootfs"))


@dataclass
class Bundles:
    base: Path
    rootfs: Path

    def make(self, args: list[str], *, annotations: Optional[dict] = None, name: Optional[str] = None) -> Path:
        return make_bundle(self.base, self.rootfs, args, annotations=annotations, name=name)


@pytest.fixture
def bundles(tmp_path, rootfs) -> Bundles:
    return Bundles(tmp_path / "bundles", rootfs)


def runc(*args: str, root: Optional[str] = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    try:
        return workload.runc(*args, root=root, check=check, **kw)
    except RunctraceError as err:
        raise AssertionError(str(err)) from None


def runc_pid(container_id: str, root: Optional[str] = None) -> int:
    return json.loads(runc("state", container_id, root=root).stdout)["pid"]


def wait_for_pid(container_id: str, root: Optional[str] = None, timeout: float = 5.0) -> int:
    """The init PID of a container that is being started by someone else."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = runc("state", container_id, root=root, check=False)
        if res.returncode == 0:
            return json.loads(res.stdout)["pid"]
        time.sleep(0.005)
    raise AssertionError(f"container {container_id} never appeared")


@pytest.fixture
def container_ids():
    """Unique container IDs, force-deleted after the test whatever happens."""
    made: list[tuple[str, Optional[str]]] = []

    def new(prefix: str = "rt", root: Optional[str] = None) -> str:
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        made.append((cid, root))
        return cid

    yield new
    for cid, root in made:
        runc("delete", "--force", cid, root=root, check=False)


BACKENDS = ["fanotify", "bcc"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn; one that cannot run here fails (these machines have every feature)."""
    from runctrace.backends import backend_support

    support = backend_support(request.param)
    if not support:
        pytest.fail(f"{request.param} backend unavailable on a machine that should have it: {support.reason}")
    return request.param


@pytest.fixture
def log(backend):
    """An EventLog on a fresh notifier of ``backend``, closed after the test."""
    from runctrace.backends import backend_class

    notifier = backend_class(backend)()
    try:
        yield EventLog(notifier)
    finally:
        notifier.close()


# Above PID_MAX_LIMIT (2**22, include/linux/threads.h): never a process's PID
_NO_SUCH_PID = 2**22 + 1


class EventLog:
    """Collects a notifier's events and waits for expected ones."""

    _barriers = 0  # caught_up's IDs, unique within the test session

    def __init__(self, notifier) -> None:
        self.notifier = notifier
        self.events: list[ContainerEvent] = []

    def pump(self, timeout: float = 0.05) -> None:
        while True:
            ev = self.notifier.get(timeout=timeout)
            if ev is None:
                return
            self.events.append(ev)
            timeout = 0.0

    def of(self, container_id: str) -> list[ContainerEvent]:
        return [e for e in self.events if e.container_id == container_id]

    def wait(self, predicate: Callable[[list[ContainerEvent]], bool], timeout: float = 10.0) -> list[ContainerEvent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if predicate(self.events):
                return self.events
        raise AssertionError(f"timed out; events so far: {[e.describe() for e in self.events]}")

    def wait_removed(self, *ids: str, timeout: float = 10.0) -> None:
        self.wait(lambda evs: all(any(e.container_id == i and e.type is EventType.REMOVE for e in evs) for i in ids), timeout)

    def settle(self, seconds: float = 0.3) -> None:
        """Give stragglers (duplicates that must not exist) a chance to arrive."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(timeout=0.05)

    def caught_up(self, timeout: float = 10.0) -> None:
        """Wait until the notifier has handled everything it was told before this call.

        Asks it to watch a PID above the kernel's limit (PID_MAX_LIMIT, 2**22), which
        no process can have: its loop answers with a REMOVE, in the wake-up that
        serves the request, after the kernel messages and state-file events that
        were waiting. A duplicate of an event already seen would be in by then,
        with no fixed wait. The barrier's own REMOVE is left out of ``events``.
        """
        EventLog._barriers += 1
        barrier = f"caught-up-{os.getpid()}-{EventLog._barriers}"
        self.notifier.add_watch_container_termination(barrier, _NO_SUCH_PID)
        deadline = time.monotonic() + timeout
        while True:
            ev = self.notifier.get(timeout=max(deadline - time.monotonic(), 0.0))
            if ev is None:
                raise AssertionError(f"the notifier never answered {barrier}; events so far: "
                                     f"{[e.describe() for e in self.events]}")
            if ev.container_id == barrier:
                return
            self.events.append(ev)

    def until_removed(self, container_id: str, timeout: float = 10.0) -> list[ContainerEvent]:
        """``container_id``'s events once its REMOVE is in and the notifier has caught up."""
        self.wait_removed(container_id, timeout=timeout)
        self.caught_up()
        return self.of(container_id)

    def lifecycle(self, container_id: str, timeout: float = 10.0) -> tuple[ContainerEvent, ContainerEvent]:
        """Exactly one ADD then one REMOVE for ``container_id``, for the same PID."""
        self.until_removed(container_id, timeout)
        return self.assert_one_lifecycle(container_id)

    def lifecycles(self, ids: list[str], timeout: float = 20.0) -> dict[str, tuple[ContainerEvent, ContainerEvent]]:
        """``lifecycle`` of containers that ran at once, caught up with once."""
        self.wait_removed(*ids, timeout=timeout)
        self.caught_up()
        return {cid: self.assert_one_lifecycle(cid) for cid in ids}

    def assert_one_lifecycle(self, container_id: str, pid: Optional[int] = None) -> tuple[ContainerEvent, ContainerEvent]:
        evs = self.of(container_id)
        kinds = [e.type for e in evs]
        assert kinds == [EventType.ADD, EventType.REMOVE], f"{container_id}: {[e.describe() for e in evs]}"
        add, remove = evs
        assert add.container_pid is not None and add.container_pid > 0, add.describe()
        assert remove.container_pid == add.container_pid
        if pid is not None:
            assert add.container_pid == pid
        assert add.time_ns <= remove.time_ns
        return add, remove


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


# ------------------------------------------------------------------ containerd


@pytest.fixture(scope="session")
def containerd(tmp_path_factory):
    """A private containerd daemon for the test session (its own socket and dirs)."""
    with PrivateContainerd(tmp_path_factory.mktemp("containerd"), namespace="runctrace-test") as daemon:
        yield daemon
