#!/usr/bin/env python3
"""The recorder's CPU per container, in steady state, per thread; optionally against
another commit, interleaved in the same run.

    sudo .venv/bin/python bench/bench_cpu.py [--backends fanotify,bcc] [--mode seq|burst]
                                             [-n 300] [-c 1] [--gap 0] [--rounds 4] [--against COMMIT]

One `runctrace record` per measurement, left to settle, then 3 warm-up containers
per unit of concurrency, then N containers, then a wait for its next flush, so the
CPU of writing those rows is counted too. Reports CPU time per container (user +
system, from /proc) for the whole process and for its main thread (recording) and
notifier thread apart.

    --mode seq    `runc run` of /bin/true, C at a time
    --mode burst  `runc run -d`, `runc state`, `runc delete --force` of a sleeping
                  container, C at a time: three runc calls per container, one of
                  which makes it (the shape of completeness in bench_record.py)
    --gap S       sleep S seconds after each container: a host where containers
                  come now and then, where every wake-up finds the recorder's
                  memory cold (back to back, each one finds it warm)

The recorder writes the dataset layout (`record -o DIR`, the default). Since
1869250 its rows go to a journal every second and to Parquet every minute, which
falls outside a run of this length; see docs/benchmarks-history.md for that file's cost.

--against COMMIT checks that commit out into a temporary git worktree and runs its
recorder (PYTHONPATH) in blocks interleaved with this checkout's, the order
alternating each round: the only fair way to compare CPU figures on a VM whose
timings drift by 10-20% from one run to the next.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Optional

sys.path.insert(0, str(Path(__file__).parent))
from bench_record import CLK_TCK, Recorder  # noqa: E402

from runctrace.workload.containers import make_bundle, make_rootfs, runc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FLUSH_WAIT_S = 1.5  # the default flush interval (1 s), and slack


def thread_ns(pid: int) -> dict[str, int]:
    """CPU time in ns of each thread, "main" and the others by name.

    From /proc/PID/task/TID/schedstat (the scheduler's own sum, to the
    nanosecond): the clock ticks of /proc/PID/task/TID/stat are 10 ms apart, a
    third of a tick per container's notifier work over 300 containers.
    """
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
        try:
            ns = int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # a kernel without CONFIG_SCHED_INFO: ticks, then
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            ns = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
        out[name] = out.get(name, 0) + ns
    return out


def workload(mode: str, bundle: Path, gap: float = 0.0):
    def one(cid: str) -> None:
        if mode == "burst":
            runc("run", "-d", cid, cwd=bundle)
            runc("state", cid)
            runc("delete", "--force", cid)
        else:
            runc("run", cid, cwd=bundle)
        if gap:
            time.sleep(gap)
    return one


def run_many(one, n: int, concurrency: int) -> None:
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, [f"cpu-{uuid.uuid4().hex[:10]}" for _ in range(n)]))


def steady_cpu(backend: str, mode: str, bundle: Path, tmp: Path, n: int, concurrency: int,
               pythonpath: Optional[str] = None, gap: float = 0.0) -> dict:
    """CPU ms per container of one recorder: whole process, main thread, notifier thread."""
    rec = Recorder(backend, tmp / f"cpu-{backend}-{uuid.uuid4().hex[:6]}", pythonpath=pythonpath)
    try:
        rec.wait_idle()
        one = workload(mode, bundle, gap)
        run_many(one, 3 * concurrency, concurrency)  # warm-up, not counted
        time.sleep(FLUSH_WAIT_S)  # and its flush
        before = thread_ns(rec.proc.pid)
        run_many(one, n, concurrency)
        time.sleep(FLUSH_WAIT_S)
        after = thread_ns(rec.proc.pid)
    finally:
        rec.stop()
    per = {k: (after[k] - before.get(k, 0)) / 1e6 / n for k in after}
    total, main = sum(per.values()), per.get("main", 0.0)
    # "notifier": every other thread (the notifier's loop; pyarrow's and jemalloc's
    # threads are idle). Older commits did not name their loop thread.
    return {"total": total, "main": main, "notifier": total - main}


def worktree(commit: str, parent: Path) -> str:
    """``commit`` checked out under ``parent``, importable as ``runctrace`` via PYTHONPATH."""
    tree = parent / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), commit],
                   check=True, capture_output=True)
    pkg = parent / "pkg" / "runctrace"
    subprocess.run(["cp", "-r", str(tree / "tracer"), str(pkg)], check=True)  # pyproject's package-dir, by hand
    (pkg / "analysis").symlink_to(tree / "analysis")
    (pkg / "bpf").symlink_to(tree / "bpf")
    return str(parent / "pkg")


@contextlib.contextmanager
def sides(against: Optional[str], tmp: Path) -> Iterator[list[tuple[str, Optional[str]]]]:
    """The sides to compare, as (name, PYTHONPATH or None for this checkout): this
    checkout, and ``against`` from a temporary git worktree, removed afterwards."""
    if not against:
        yield [("this", None)]
        return
    (tmp / "against" / "pkg").mkdir(parents=True)
    try:
        yield [("this", None), (against, worktree(against, tmp / "against"))]
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "against" / "tree")],
                       capture_output=True)


def interleaved(sides: list[tuple[str, Optional[str]]], rounds: int,
                measure: Callable[[Optional[str]], dict]) -> dict[str, list[dict]]:
    """``measure(pythonpath)`` of each side, ``rounds`` times, the order alternating each round."""
    results: dict[str, list[dict]] = {name: [] for name, _ in sides}
    for r in range(rounds):
        for name, path in (sides if r % 2 == 0 else sides[::-1]):
            results[name].append(measure(path))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("--mode", choices=("seq", "burst"), default="seq")
    ap.add_argument("-n", type=int, default=300, help="containers per measurement")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("--gap", type=float, default=0.0, help="seconds of sleep after each container")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--against", help="a commit to compare with, interleaved")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        tmp = Path(d)
        rootfs = make_rootfs(tmp / "rootfs")
        args_ = ["sleep", "30"] if args.mode == "burst" else ["true"]
        bundle = make_bundle(tmp / "b", rootfs, args_, name="x")
        with sides(args.against, tmp) as compared:
            for backend in args.backends.split(","):
                results = interleaved(compared, args.rounds, lambda path: steady_cpu(
                    backend, args.mode, bundle, tmp, args.n, args.concurrency, path, args.gap))
                for name, rs in results.items():
                    med = {k: statistics.median(x[k] for x in rs) for k in ("total", "main", "notifier")}
                    gap = f" gap={args.gap:g}s" if args.gap else ""
                    print(f"{backend:9} {args.mode} c={args.concurrency}{gap} {name:>10}: CPU per container "
                          f"{med['total']:.2f} ms (main {med['main']:.2f}, notifier {med['notifier']:.2f}); "
                          f"medians of {len(rs)}: {[round(x['total'], 2) for x in rs]}", flush=True)


if __name__ == "__main__":
    main()
