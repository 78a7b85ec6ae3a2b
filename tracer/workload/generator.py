"""``runctrace churn``: a workload of real containers with its own ground truth.

N containers from a static busybox root filesystem, C at a time, driven the way a
manager would drive runc (``run`` in the foreground, ``create``/``start``/``delete``)
or through containerd (``ctr run --rm``). Lifetimes follow a chosen distribution;
a share can fail on purpose; one logical container can crash-loop. Every container
started is written to a ground-truth file (JSON lines), so a recording can be scored
against it, and every one is deleted again, also on Ctrl-C.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from runctrace.errors import RunctraceError
from runctrace.workload.containers import PrivateContainerd, make_bundle, make_rootfs, runc

DRIVERS = ("run", "create", "ctr")


def parse_lifetime(spec: str) -> Callable[[random.Random], float]:
    """``fixed:0.1``, ``uniform:0.05-0.5`` or ``exp:0.2`` (mean), in seconds."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "fixed":
            value = float(arg)
            return lambda rng: value
        if kind == "uniform":
            lo, hi = (float(x) for x in arg.split("-"))
            return lambda rng: rng.uniform(lo, hi)
        if kind == "exp":
            mean = float(arg)
            return lambda rng: rng.expovariate(1 / mean) if mean > 0 else 0.0
    except ValueError:
        pass
    raise RunctraceError(f"bad lifetime {spec!r}: use fixed:SECONDS, uniform:LOW-HIGH or exp:MEAN")


@dataclass
class Truth:
    """What churn did to one container: the yardstick for a recording."""

    container_id: str
    driver: str
    expect_container: bool  # False for a deliberate failure: runc must refuse it
    exit_code: Optional[int]
    pid: Optional[int] = None
    start_ns: Optional[int] = None
    end_ns: Optional[int] = None
    ok: bool = False  # the driver did what was planned
    detail: str = ""


@dataclass
class Plan:
    container_id: str
    args: list[str]
    expect_container: bool
    exit_code: Optional[int]
    failure: str = ""  # "missing-binary" or "bad-mount"


class Churn:
    def __init__(
        self, workdir: Path, *, driver: str = "run", lifetime: str = "fixed:0", fail_share: float = 0.0,
        crash_loop: int = 0, seed: int = 0, prefix: str = "churn",
    ) -> None:
        if driver not in DRIVERS:
            raise RunctraceError(f"unknown driver {driver!r}; choose one of {', '.join(DRIVERS)}")
        self.workdir = workdir
        self.driver = driver
        self.lifetime = parse_lifetime(lifetime)
        self.fail_share = fail_share
        self.crash_loop = crash_loop
        self.rng = random.Random(seed)
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.rootfs = make_rootfs(workdir / "rootfs")
        self._started: set[str] = set()
        self._lock = threading.Lock()
        self._containerd: Optional[PrivateContainerd] = None
        self._stop = threading.Event()

    def plans(self, n: int) -> Iterator[Plan]:
        for i in range(n):
            cid = f"{self.prefix}-{i:05d}"
            if self.rng.random() < self.fail_share:
                failure = self.rng.choice(["missing-binary", "bad-mount"])
                yield Plan(cid, ["/no/such/binary"] if failure == "missing-binary" else ["true"], False, None, failure)
                continue
            seconds = self.lifetime(self.rng)
            code = self.rng.choice([0, 0, 0, 1, 2])
            yield Plan(cid, ["sh", "-c", f"sleep {seconds:.3f}; exit {code}"], True, code)
        for k in range(self.crash_loop):
            # the same logical container (same bundle, same hostname), restarting
            yield Plan(f"{self.prefix}-crashloop", ["sh", "-c", "echo crashing; exit 1"], True, 1, f"restart-{k}")

    def _bundle(self, plan: Plan) -> Path:
        name = "crashloop" if plan.failure.startswith("restart") else plan.container_id
        bundle = self.workdir / "bundles" / name
        if bundle.exists():
            return bundle
        bundle = make_bundle(self.workdir / "bundles", self.rootfs, plan.args, name=name)
        if plan.failure == "bad-mount":
            spec = json.loads((bundle / "config.json").read_text())
            spec["mounts"].append({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["bind"]})
            (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def _one(self, plan: Plan) -> Truth:
        truth = Truth(plan.container_id, self.driver, plan.expect_container, plan.exit_code)
        if self._stop.is_set():
            truth.detail = "not started (interrupted)"
            return truth
        bundle = self._bundle(plan)
        pid_file = bundle / f"{plan.container_id}.pid"
        with self._lock:
            self._started.add(plan.container_id)
        truth.start_ns = time.time_ns()
        if self.driver == "run":
            res = runc("run", "--pid-file", str(pid_file), plan.container_id, cwd=bundle, check=False)
            code = res.returncode
        elif self.driver == "create":
            res = runc("create", "--bundle", str(bundle), "--pid-file", str(pid_file), plan.container_id, check=False)
            code = res.returncode
            if code == 0:
                truth.pid = int(pid_file.read_text())
                runc("start", plan.container_id, check=False)
                while not self._stop.is_set() and runc("state", plan.container_id, check=False).stdout.count(
                        '"status": "running"'):
                    time.sleep(0.01)
                code = plan.exit_code if plan.exit_code is not None else 0
            runc("delete", "--force", plan.container_id, check=False)
        else:
            # ctr gets no image, hence no PATH: name the binary absolutely. The
            # containers share one root filesystem; nothing here writes to it.
            cmd = plan.args if plan.args[0].startswith("/") else ["/bin/" + plan.args[0], *plan.args[1:]]
            res = subprocess.run(self._containerd.run_cmd(self.rootfs, plan.container_id, *cmd),
                                 capture_output=True, text=True)
            code = res.returncode
        truth.end_ns = time.time_ns()
        if truth.pid is None and pid_file.exists():
            try:
                truth.pid = int(pid_file.read_text())
            except ValueError:
                pass
        if plan.expect_container:
            truth.ok = code == plan.exit_code
            truth.detail = "" if truth.ok else f"driver exit {code}, expected {plan.exit_code}: {res.stderr.strip()[-200:]}"
        else:
            truth.ok = code != 0
            truth.detail = plan.failure
        return truth

    def run(self, n: int, concurrency: int, on_done: Callable[[Truth], None]) -> list[Truth]:
        plans = list(self.plans(n))
        loop = [p for p in plans if p.failure.startswith("restart")]
        others = [p for p in plans if not p.failure.startswith("restart")]
        results: list[Truth] = []

        def crash_loop():
            for p in loop:  # a restart loop is sequential by nature
                t = self._one(p)
                results.append(t)
                on_done(t)
                runc("delete", "--force", p.container_id, check=False)

        # Not pool.map in a with-block: on Ctrl-C its exit waits for the workers
        # before an except clause can set the stop flag, and it cancels the queued
        # containers only if the interrupt lands inside map's own wait.
        pool = ThreadPoolExecutor(concurrency)
        try:
            if self.driver == "ctr":
                self._containerd = PrivateContainerd(self.workdir / "containerd", namespace="runctrace-churn").__enter__()
            looper = threading.Thread(target=crash_loop, daemon=True)
            looper.start()
            for future in [pool.submit(self._one, p) for p in others]:
                t = future.result()
                results.append(t)
                on_done(t)
            looper.join()
        except KeyboardInterrupt:
            # Nothing new starts; what runs is deleted (which ends a foreground
            # `runc run` too), then the workers are waited for, then whatever a
            # worker created meanwhile is deleted.
            self._stop.set()
            self.cleanup(keep_containerd=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.cleanup()
        return results

    def cleanup(self, keep_containerd: bool = False) -> None:
        """Delete every container this run started (runc state survives a Ctrl-C)."""
        with self._lock:
            started = sorted(self._started)
        for cid in started:
            runc("delete", "--force", cid, check=False)
        if self._containerd is not None and not keep_containerd:
            self._containerd.__exit__()
            self._containerd = None


def write_truth(path: Path, truths: list[Truth]) -> None:
    with open(path, "w") as f:
        for t in truths:
            f.write(json.dumps(asdict(t)) + "\n")
