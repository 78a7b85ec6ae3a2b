"""Real containers to watch: a busybox root filesystem, OCI bundles, a private containerd.

Shared by the demo (``python -m runctrace.workload.demo``), the benchmarks and the tests, so
that every figure and every test runs the same kind of container.
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
from pathlib import Path
from typing import Optional

from runctrace.errors import RunctraceError

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "true", "false", "sleep", "cat", "echo", "ls")


def make_rootfs(path: Path) -> Path:
    """A minimal root filesystem: static busybox (Debian's busybox-static) and applet links."""
    if not os.path.exists(BUSYBOX):
        raise RunctraceError(f"{BUSYBOX} not found: install Debian's busybox-static")
    (path / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (path / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        link = path / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    return path


_TEMPLATE: Optional[dict] = None


def spec_template() -> dict:
    """runc's own default spec, made non-interactive (no terminal) and read-only."""
    global _TEMPLATE
    if _TEMPLATE is None:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["runc", "spec"], cwd=d, check=True, capture_output=True)
            spec = json.loads(Path(d, "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["root"]["readonly"] = True
        _TEMPLATE = spec
    return copy.deepcopy(_TEMPLATE)


def make_bundle(
    base: Path, rootfs: Path, args: list[str], *, annotations: Optional[dict] = None, name: Optional[str] = None
) -> Path:
    bundle = base / (name or uuid.uuid4().hex[:8])
    bundle.mkdir(parents=True)
    spec = spec_template()
    spec["process"]["args"] = args
    spec["root"]["path"] = str(rootfs)
    spec["hostname"] = bundle.name
    if annotations:
        spec["annotations"] = annotations
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def runc(*args: str, root: Optional[str] = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run runc with its output captured in files, not pipes.

    A created or detached container inherits runc's stdio; with pipes, reading to
    EOF would wait for the container to exit.
    """
    cmd = ["runc"] + (["--root", root] if root else []) + list(args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, **kw)
        out.seek(0), err.seek(0)
        proc.stdout, proc.stderr = out.read().decode(), err.read().decode()
    if check and proc.returncode:
        raise RunctraceError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class PrivateContainerd:
    """A containerd daemon with its own socket and directories, stopped on exit."""

    def __init__(self, base: Path, namespace: str = "runctrace") -> None:
        self.base = base
        self.namespace = namespace
        self.address = str(base / "containerd.sock")
        self._proc: Optional[subprocess.Popen] = None

    @property
    def runc_root(self) -> str:
        # containerd's runc v2 shim keeps runc's state here, whatever its own --state
        return f"/run/containerd/runc/{self.namespace}"

    def __enter__(self) -> "PrivateContainerd":
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.base}/root"\n'
            f'state = "{self.base}/state"\n'
            # no Kubernetes CRI plugin: nothing here needs it, and it wants CNI
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.address}"\n'
            f'[ttrpc]\n  address = "{self.address}.ttrpc"\n'
        )
        log = open(self.base / "containerd.log", "wb")
        self._proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RunctraceError(f"containerd exited: {(self.base / 'containerd.log').read_text()[-2000:]}")
            if os.path.exists(self.address) and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RunctraceError("containerd did not come up in 30 s")

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = ["ctr", "--address", self.address, "--namespace", self.namespace, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode:
            raise RunctraceError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def run_cmd(self, rootfs: Path, container_id: str, *cmd: str) -> list[str]:
        """The argv of ``ctr run --rm --rootfs DIR ID CMD`` against this daemon."""
        return ["ctr", "--address", self.address, "--namespace", self.namespace,
                "run", "--rm", "--rootfs", str(rootfs), container_id, *cmd]
