#!/usr/bin/env python3
"""Start overhead and recorder CPU per container as concurrency grows.

    sudo .venv/bin/python bench/bench_scaling.py [--backends fanotify,bcc] [--levels 1,2,4,8,16] [--pairs 6]

At each concurrency level: interleaved blocks with and without `runctrace record`
(ratio of median `runc run` latencies, 95% bootstrap CI), and the recorder's CPU
time per container during its blocks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_record import Recorder, bootstrap_ratio, timed_runs  # noqa: E402

from runctrace.workload import make_bundle, make_rootfs  # noqa: E402


def level(backend: str, bundle: Path, tmp: Path, concurrency: int, pairs: int) -> str:
    block = max(8, 2 * concurrency)
    results, cpu, containers = [], 0.0, 0
    for i in range(pairs):
        sides = {}
        for side in (["with", "without"] if i % 2 == 0 else ["without", "with"]):
            if side == "with":
                rec = Recorder(backend, tmp / f"s-{backend}-{concurrency}-{i}.parquet")
                cpu0 = rec.cpu_seconds()
                sides[side] = timed_runs(bundle, block, concurrency)
                cpu += rec.cpu_seconds() - cpu0
                containers += block
                rec.stop()
            else:
                sides[side] = timed_runs(bundle, block, concurrency)
        results.append((sides["with"], sides["without"]))
    r, lo, hi = bootstrap_ratio(results)
    return (f"{backend:9} concurrency {concurrency:2}: overhead ratio {r:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
            f"recorder CPU {cpu * 1e3 / containers:.2f} ms per container, {pairs * block} runs a side")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("--levels", default="1,2,4,8,16")
    ap.add_argument("--pairs", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        tmp = Path(d)
        bundle = make_bundle(tmp / "b", make_rootfs(tmp / "rootfs"), ["true"], name="true")
        timed_runs(bundle, 5)
        for backend in args.backends.split(","):
            for c in (int(x) for x in args.levels.split(",")):
                print(level(backend, bundle, tmp, c, args.pairs), flush=True)


if __name__ == "__main__":
    main()
