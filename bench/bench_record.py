#!/usr/bin/env python3
"""What recording costs a host, measured side by side in one run.

    sudo .venv/bin/python bench/bench_record.py [--backends fanotify,bcc] [--rounds 40] [--block 8]
                                                 [--burst 500] [--concurrency 8]
                                                 [--against COMMIT [--overhead-only]]

1. Start overhead: latency of `runc run` of /bin/true (a busybox container) with no
   recorder, and with each backend's recorder attached (`runctrace record`, a separate
   process, as operators run it), in interleaved blocks so drift hits all sides alike.
   Every block follows a few untimed warm-up runs. Prints each backend's ratio of
   medians to the no-recorder side with a 95% bootstrap confidence interval over
   rounds, sequentially and with 4 runc's at once (2 cores: a recorder that burns CPU
   during a burst slows runc itself). With --against COMMIT, each backend's recorder
   at that commit (a temporary git worktree, see bench_cpu.py) is one more side of
   the same interleaved blocks, so a change in overhead is measured, not inferred
   from two runs an hour apart.
2. Completeness: a burst of N containers at concurrency C; how many were recorded
   with an add and a remove carrying the right PID.
3. Recorder CPU: its user+system time per container in steady state (300 sequential
   containers, see bench_cpu.py) and during the burst, and while idle.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pyarrow.parquet as pq

from runctrace.workload.containers import make_bundle, make_rootfs, runc

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Recorder:
    def __init__(self, backend: str, output: Path, pythonpath: Optional[str] = None) -> None:
        """``pythonpath``: run the runctrace found there instead (bench_cpu.py --against)."""
        self.output = output
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runctrace", "record", "-q", "--backend", backend, "-o", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd="/",
        )
        line = self.proc.stderr.readline()
        if "recording to" not in line:
            raise SystemExit(f"recorder did not start: {line}{self.proc.stderr.read()}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def wait_idle(self, quiet_s: float = 0.3, limit_s: float = 10.0) -> None:
        """Until the recorder has used no CPU for ``quiet_s`` (start-up work done)."""
        deadline = time.monotonic() + limit_s
        last = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = self.cpu_seconds()
            if now == last:
                return
            last = now

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        return err


def timed_runs(bundle: Path, n: int, concurrency: int = 1) -> list[float]:
    def one(_):
        cid = f"bench-{uuid.uuid4().hex[:10]}"
        start = time.perf_counter()
        runc("run", cid, cwd=bundle)
        return time.perf_counter() - start

    if concurrency == 1:
        return [one(i) for i in range(n)]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))


# Untimed runs before every timed block, on every side. Without them the first side
# measured after any pause is slower: on this VM, runs after 1.5 s of idle take 10-12%
# longer (cold vCPUs, caches). Starting a recorder is such a pause, so an early
# version of this benchmark charged ~8% "overhead" even to a recorder that was
# SIGSTOPped, and to a do-nothing Python process (see docs/benchmarks-history.md).
WARM_RUNS = 3


def block(bundle: Path, n: int, concurrency: int = 1) -> list[float]:
    timed_runs(bundle, WARM_RUNS * concurrency, concurrency)
    return timed_runs(bundle, n, concurrency)


def bootstrap_ratio(pairs: list[tuple[list[float], list[float]]], rounds: int = 2000) -> tuple[float, float, float]:
    """Ratio of medians (with / without) and its 95% CI, resampling whole pairs of blocks."""
    def ratio(sample):
        with_ = [x for a, _ in sample for x in a]
        without = [x for _, b in sample for x in b]
        return statistics.median(with_) / statistics.median(without)

    rng = random.Random(1)
    boots = sorted(ratio([rng.choice(pairs) for _ in pairs]) for _ in range(rounds))
    return ratio(pairs), boots[int(0.025 * rounds)], boots[int(0.975 * rounds)]


def overhead(backends: list[str], bundle: Path, tmp: Path, rounds: int, n: int, concurrency: int,
             paths: Optional[dict[str, str]] = None) -> dict:
    """Interleaved blocks: no recorder, and each backend's recorder, in one run.

    Each round measures every side once, in an order that rotates from round to
    round so no side always follows another. A recorder is started before its block
    and left to settle (its start-up is not per-container cost), then stopped.
    Returns, per backend, the ratio of its median to the no-recorder median and the
    95% bootstrap interval over rounds. (Not CPU: a block of a few containers ends
    before the recorder's first flush of them; bench_cpu.py measures steady state.)
    ``paths``: a side named ``backend@commit`` runs the runctrace found at
    ``paths[commit]`` (PYTHONPATH).
    """
    paths = paths or {}
    sides = ["none", *backends]
    blocks: dict[str, list[list[float]]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in sides[i % len(sides):] + sides[: i % len(sides)]:
            if side == "none":
                blocks[side].append(block(bundle, n, concurrency))
                continue
            backend, _, commit = side.partition("@")
            rec = Recorder(backend, tmp / f"oh-{backend}-{commit}-{concurrency}-{i}.parquet",
                           pythonpath=paths.get(commit))
            rec.wait_idle()
            blocks[side].append(block(bundle, n, concurrency))
            rec.stop()
    out = {}
    base = blocks["none"]
    for b in backends:
        r, lo, hi = bootstrap_ratio(list(zip(blocks[b], base)))
        out[b] = {
            "median_with_ms": statistics.median(x for blk in blocks[b] for x in blk) * 1e3,
            "median_without_ms": statistics.median(x for blk in base for x in blk) * 1e3,
            "ratio": r, "ci95": (lo, hi), "runs_per_side": rounds * n,
        }
    return out


def completeness(backend: str, bundle: Path, tmp: Path, n: int, concurrency: int) -> dict:
    out = tmp / f"burst-{backend}.parquet"
    rec = Recorder(backend, out)
    rec.wait_idle()
    idle_cpu0 = rec.cpu_seconds()
    time.sleep(5)
    idle_cpu = rec.cpu_seconds() - idle_cpu0
    ids = [f"burst-{uuid.uuid4().hex[:10]}" for _ in range(n)]
    truth: dict[str, int] = {}
    lock = threading.Lock()

    def one(cid):
        # `run -d` then read the PID runc reports, then kill: ground truth per container
        runc("run", "-d", cid, cwd=bundle)
        pid = json.loads(runc("state", cid).stdout)["pid"]
        with lock:
            truth[cid] = pid
        runc("delete", "--force", cid)

    cpu0 = rec.cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, ids))
    wall = time.perf_counter() - start
    time.sleep(1.0)
    cpu = rec.cpu_seconds() - cpu0
    rss = rec.rss_kib()
    err = rec.stop()
    rows = [r for r in pq.read_table(out).to_pylist() if r["container_id"] in truth]
    adds = {r["container_id"] for r in rows if r["type"] == "add" and r["container_pid"] == truth[r["container_id"]]}
    removes = {r["container_id"] for r in rows if r["type"] == "remove" and r["container_pid"] == truth[r["container_id"]]}
    specs = {r["container_id"] for r in rows if r["type"] == "add" and r["process_args"] == ["sleep", "30"]}
    dupes = len(rows) - 2 * len(truth)
    stats = json.loads(pq.read_metadata(out).metadata[b"runctrace.stats"])
    return {
        "containers": n, "concurrency": concurrency, "wall_s": wall,
        "adds_with_right_pid": len(adds), "removes_with_right_pid": len(removes), "specs": len(specs),
        "extra_rows": dupes, "lost": stats.get("lost"), "missed": stats.get("missed"),
        "cpu_ms_per_container": cpu * 1e3 / n, "idle_cpu_ms_per_min": idle_cpu * 1e3 * 12,
        "rss_mib_after": rss / 1024, "recorder_summary": err.strip().splitlines()[-1] if err.strip() else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("--rounds", type=int, default=40, help="interleaved rounds (one block per side each)")
    ap.add_argument("--block", type=int, default=8, help="timed runs per block")
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--against", help="also measure each backend's recorder at this commit, interleaved")
    ap.add_argument("--overhead-only", action="store_true", help="only the start overhead (sequential)")
    args = ap.parse_args()
    backends = args.backends.split(",")
    from bench_cpu import sides  # one module imports the other's Recorder
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        tmp = Path(d)
        rootfs = make_rootfs(tmp / "rootfs")
        true_bundle = make_bundle(tmp / "b", rootfs, ["true"], name="true")
        sleep_bundle = make_bundle(tmp / "b", rootfs, ["sleep", "30"], name="sleep")
        timed_runs(true_bundle, 5)  # warm caches
        report: dict = {b: {} for b in backends}
        with sides(args.against, tmp) as compared:
            paths = {name: path for name, path in compared if path}
            measured = backends + [f"{b}@{c}" for b in backends for c in paths]
            levels = (("sequential", 1, args.rounds),) if args.overhead_only else (
                ("sequential", 1, args.rounds), ("4 at once", 4, max(args.rounds // 2, 4)))
            for label, concurrency, rounds in levels:
                print(f"== start overhead, {label} ({', '.join(['none', *measured])} interleaved)", flush=True)
                for b, res in overhead(measured, true_bundle, tmp, rounds, args.block, concurrency, paths).items():
                    print(f"{b:9} ratio {res['ratio']:.3f} (95% CI {res['ci95'][0]:.3f}-{res['ci95'][1]:.3f}); median "
                          f"{res['median_with_ms']:.1f} ms with / {res['median_without_ms']:.1f} ms without, "
                          f"{res['runs_per_side']} runs a side", flush=True)
                    report.setdefault(b, {})[label] = res
        if args.overhead_only:
            print(json.dumps(report, indent=1, default=str))
            return
        print("== recorder CPU, steady state: 300 sequential `runc run` of /bin/true, flush included", flush=True)
        from bench_cpu import steady_cpu  # one module imports the other's Recorder

        for b in backends:
            cpu = steady_cpu(b, "seq", true_bundle, tmp, 300, 1)
            print(f"{b:9} CPU per container {cpu['total']:.2f} ms (main thread {cpu['main']:.2f}, "
                  f"notifier thread {cpu['notifier']:.2f})", flush=True)
            report[b]["cpu, sequential"] = cpu
        for b in backends:
            print(f"== completeness, {b}", flush=True)
            comp = completeness(b, sleep_bundle, tmp, args.burst, args.concurrency)
            print(f"completeness: {comp['adds_with_right_pid']}/{comp['containers']} adds and "
                  f"{comp['removes_with_right_pid']}/{comp['containers']} removes with the right PID, "
                  f"{comp['specs']}/{comp['containers']} specs, {comp['extra_rows']} extra rows, "
                  f"lost {comp['lost']}, missed {comp['missed']} "
                  f"(burst at concurrency {comp['concurrency']}: {comp['wall_s']:.1f} s)", flush=True)
            print(f"recorder CPU: {comp['cpu_ms_per_container']:.2f} ms per container; "
                  f"idle {comp['idle_cpu_ms_per_min']:.1f} ms per minute; RSS {comp['rss_mib_after']:.0f} MiB", flush=True)
            report[b]["burst"] = comp
        print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
