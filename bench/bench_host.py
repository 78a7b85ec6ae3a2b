#!/usr/bin/env python3
"""What the fanotify recorder costs a host that is not starting containers: its
CPU and wake-ups per unrelated process, and per minute of idle; optionally
against another commit, interleaved in the same run.

    sudo .venv/bin/python bench/bench_host.py [-n 1000] [--gap 0.005] [--idle 20]
                                              [--rounds 3] [--against COMMIT]

The process connector reports every exec and exit on the host to the fanotify
backend, which must look at each before it can tell that it is not runc's. A
shell loop runs /bin/true and `sleep GAP` N times (2N processes, as a node's
probes and cron jobs would), then the recorder is left alone for IDLE seconds.
CPU is the whole recorder process's (schedstat), wake-ups its threads'
voluntary context switches. One `runctrace record` per measurement.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cpu import interleaved, sides, thread_ns  # noqa: E402
from bench_record import Recorder  # noqa: E402


def wakeups(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        m = re.search(r"voluntary_ctxt_switches:\s+(\d+)", (task / "status").read_text())
        total += int(m.group(1)) if m else 0
    return total


def cpu_ns(pid: int) -> int:
    return sum(thread_ns(pid).values())


def measure(tmp: Path, n: int, gap: float, idle: float, pythonpath) -> dict:
    rec = Recorder("fanotify", tmp / f"host-{time.monotonic_ns()}", pythonpath=pythonpath)
    try:
        rec.wait_idle()
        pid = rec.proc.pid
        c0, w0 = cpu_ns(pid), wakeups(pid)
        subprocess.run(["/bin/sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true; sleep {gap}; i=$((i+1)); done"],
                       check=True)
        time.sleep(0.5)
        c1, w1 = cpu_ns(pid), wakeups(pid)
        time.sleep(idle)
        c2, w2 = cpu_ns(pid), wakeups(pid)
    finally:
        rec.stop()
    return {
        "us_per_process": (c1 - c0) / 1e3 / (2 * n),
        "wakeups_per_process": (w1 - w0) / (2 * n),
        "idle_ms_per_min": (c2 - c1) / 1e6 * 60 / idle,
        "idle_wakeups_per_min": (w2 - w1) * 60 / idle,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="loop iterations (2 processes each)")
    ap.add_argument("--gap", type=float, default=0.005, help="the loop's sleep, seconds")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds left alone")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", help="a commit to compare with, interleaved")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        tmp = Path(d)
        with sides(args.against, tmp) as compared:
            results = interleaved(compared, args.rounds, lambda path: measure(tmp, args.n, args.gap, args.idle, path))
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"fanotify {name:>10}: {med['us_per_process']:.1f} us CPU and {med['wakeups_per_process']:.2f} "
              f"wake-ups per unrelated process; idle {med['idle_ms_per_min']:.2f} ms CPU and "
              f"{med['idle_wakeups_per_min']:.0f} wake-ups per minute; "
              f"us per process of each round: {[round(r['us_per_process'], 1) for r in rs]}", flush=True)


if __name__ == "__main__":
    main()
