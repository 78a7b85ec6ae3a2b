#!/usr/bin/env python3
"""What a recorder costs processes that have nothing to do with containers.

    sudo .venv/bin/python bench/bench_syscall_tax.py [--backends fanotify,bcc] [--rounds 8] [--block 5]
                                                      [--against COMMIT]

A host pays for a recorder in every process, not only in runc. This times a
syscall-bound program that execs nothing and runs no container (``dd`` copying
1-byte blocks from /dev/zero to /dev/null: two syscalls per byte) with no
recorder, and with each backend's recorder attached (`runctrace record`, as
operators run it), in interleaved blocks. Prints each backend's ratio of medians
to the no-recorder side, with a 95% bootstrap interval over rounds. With
--against COMMIT, each backend's recorder at that commit (a temporary git
worktree, see bench_cpu.py) is one more side of the same blocks.

Why this can be more than 1: once any ``syscalls:`` tracepoint is attached, the
kernel marks every task for syscall tracing, so each syscall of every process
takes the tracing entry and exit path, and the tracepoint then checks whether
that syscall is one being traced. The eBPF backend attached four (execve entry
and exit, chdir, exit_group) until 2026-11-29 and measured 1.109 here; it now
attaches none. The fanotify backend's marks and socket add nothing to a syscall
that is not an exec of runc or an exit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import sides  # noqa: E402
from bench_record import Recorder, bootstrap_ratio  # noqa: E402

BYTES = 300_000  # 600,000 syscalls: about 70 ms here


def dd_seconds() -> float:
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={BYTES}"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def block(n: int) -> list[float]:
    dd_seconds()  # untimed warm-up, as bench_record's blocks have
    return [dd_seconds() for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=5, help="dd runs per side per round")
    ap.add_argument("--against", help="also measure each backend's recorder at this commit, interleaved")
    args = ap.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d, sides(args.against, Path(d)) as compared:
        paths = {name: path for name, path in compared if path}
        measured = backends + [f"{b}@{c}" for b in backends for c in paths]
        sides_ = ["none", *measured]
        blocks: dict[str, list[list[float]]] = {side: [] for side in sides_}
        for i in range(args.rounds):
            for side in sides_[i % len(sides_):] + sides_[: i % len(sides_)]:
                if side == "none":
                    blocks[side].append(block(args.block))
                    continue
                backend, _, commit = side.partition("@")
                rec = Recorder(backend, Path(d) / f"tax-{backend}-{commit}-{i}.parquet", pythonpath=paths.get(commit))
                rec.wait_idle()
                blocks[side].append(block(args.block))
                rec.stop()
    base = blocks["none"]
    per_call_ns = statistics.median(x for b in base for x in b) / (2 * BYTES) * 1e9
    print(f"dd of {BYTES:,} 1-byte blocks ({2 * BYTES:,} syscalls), {args.rounds} rounds of "
          f"{args.block} runs per side; without a recorder: "
          f"{statistics.median(x for b in base for x in b) * 1e3:.1f} ms ({per_call_ns:.0f} ns per syscall)")
    for b in measured:
        r, lo, hi = bootstrap_ratio(list(zip(blocks[b], base)))
        extra_ns = (statistics.median(x for blk in blocks[b] for x in blk)
                    - statistics.median(x for blk in base for x in blk)) / (2 * BYTES) * 1e9
        print(f"  {b:18} with/without {r:.3f} (95% CI {lo:.3f}-{hi:.3f}), {extra_ns:+.1f} ns per syscall")


if __name__ == "__main__":
    main()
