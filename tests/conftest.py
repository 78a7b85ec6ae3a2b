"""Shared fixtures: real runc containers from a static busybox root filesystem.

Root-only tests carry the ``root`` marker and skip, with the reason, only when not
root. Everything else they need (runc, containerd, busybox-static) the project's
bootstrap.sh installs, so a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from runctrace.events import ContainerEvent, EventType

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "true", "false", "sleep", "cat", "echo", "ls")
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root: fanotify, BPF and runc all require CAP_SYS_ADMIN")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def make_rootfs(path: Path) -> Path:
    """A minimal root filesystem: static busybox and a few applet links."""
    (path / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (path / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        link = path / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    return path


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture(scope="session")
def spec_template(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("spec")
    subprocess.run(["runc", "spec"], cwd=d, check=True)
    spec = json.loads((d / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["root"]["readonly"] = True
    return spec


@dataclass
class Bundles:
    base: Path
    rootfs: Path
    template: dict
    created: list = field(default_factory=list)

    def make(self, args: list[str], *, annotations: Optional[dict] = None, name: Optional[str] = None) -> Path:
        bundle = self.base / (name or uuid.uuid4().hex[:8])
        bundle.mkdir(parents=True)
        spec = copy.deepcopy(self.template)
        spec["process"]["args"] = args
        spec["root"]["path"] = str(self.rootfs)
        spec["hostname"] = bundle.name
        if annotations:
            spec["annotations"] = annotations
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle


@pytest.fixture
def bundles(tmp_path, rootfs, spec_template) -> Bundles:
    return Bundles(tmp_path / "bundles", rootfs, spec_template)


def runc(*args: str, root: Optional[str] = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run runc and capture its output in files, not pipes.

    A created or detached container inherits runc's stdio; with pipes, reading to
    EOF would wait for the container to exit.
    """
    cmd = ["runc"] + (["--root", root] if root else []) + list(args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, **kw)
        out.seek(0), err.seek(0)
        proc.stdout, proc.stderr = out.read().decode(), err.read().decode()
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


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


class EventLog:
    """Collects a notifier's events and waits for expected ones."""

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


@dataclass
class Containerd:
    address: str
    namespace: str = "runctrace-test"

    def ctr(self, *args: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        cmd = ["ctr", "--address", self.address, "--namespace", self.namespace, *args]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout, **kw)

    @property
    def runc_root(self) -> str:
        return f"/run/containerd/runc/{self.namespace}"


@pytest.fixture(scope="session")
def containerd(tmp_path_factory):
    """A private containerd daemon for the test session (its own socket and dirs)."""
    base = tmp_path_factory.mktemp("containerd")
    address = str(base / "containerd.sock")
    config = base / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{base}/root"\n'
        f'state = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{address}"\n'
        f'[ttrpc]\n  address = "{address}.ttrpc"\n'
    )
    log = open(base / "containerd.log", "wb")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {(base / 'containerd.log').read_text()[-2000:]}")
            if os.path.exists(address):
                ok = subprocess.run(["ctr", "--address", address, "version"], capture_output=True)
                if ok.returncode == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("containerd did not come up in 30 s")
        yield Containerd(address)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
