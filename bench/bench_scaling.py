#!/usr/bin/env python3
"""Start overhead and recorder CPU per container as concurrency grows.

    sudo .venv/bin/python bench/bench_scaling.py [--backends fanotify,bcc] [--levels 1,2,4,8,16] [--rounds 8]

At each concurrency level: interleaved blocks with no recorder and with each
backend's `runctrace record` (ratio of median `runc run` latencies, 95% bootstrap
CI), measured as in bench_record.py's start overhead; then the recorder's CPU time
per container in steady state (bench_cpu.py: 50 containers per unit of
concurrency, its flush included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cpu import steady_cpu  # noqa: E402
from bench_record import overhead, timed_runs  # noqa: E402

from runctrace.workload.containers import make_bundle, make_rootfs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("--levels", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        tmp = Path(d)
        bundle = make_bundle(tmp / "b", make_rootfs(tmp / "rootfs"), ["true"], name="true")
        timed_runs(bundle, 5)
        for c in (int(x) for x in args.levels.split(",")):
            n = max(8, 2 * c)
            for b, res in overhead(backends, bundle, tmp, args.rounds, n, c).items():
                cpu = steady_cpu(b, "seq", bundle, tmp, max(150, 50 * c), c)
                print(f"{b:9} concurrency {c:2}: overhead ratio {res['ratio']:.3f} "
                      f"(95% CI {res['ci95'][0]:.3f}-{res['ci95'][1]:.3f}), recorder CPU "
                      f"{cpu['total']:.2f} ms per container, {res['runs_per_side']} runs a side",
                      flush=True)


if __name__ == "__main__":
    main()
