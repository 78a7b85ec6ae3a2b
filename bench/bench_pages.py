#!/usr/bin/env python3
"""Memory pages the recorder touches per container, and per flush: the cost driver
on this VM, counted instead of timed. Optionally against another commit.

    sudo .venv/bin/python bench/bench_pages.py [--backends fanotify,bcc] [-n 20]
                                               [--rounds 2] [--against COMMIT]

This VM charges a thread CPU time for each page it touches that it has not
touched for a while (bench_wakeup.py: from ~0.2 us a page touched every
millisecond to ~25 us after half a second, varying by the hour). CPU per container
(bench_cpu.py) is therefore pages times an hourly price; the pages are the part
that is ours, and they do not drift.

For each sample: clear the accessed bits of every page of one `runctrace record`
(``/proc/PID/clear_refs``), run one `runc run` of /bin/true, wait 0.3 s for its
remove, and sum ``Referenced`` over ``/proc/PID/smaps``; then clear again and wait
1.2 s, in which the recorder's one-second flush of those rows lands. Prints the
medians.

    private    anonymous memory and the heap: only this process maps them, so the
               count is exact (Python objects, code objects, thread stacks, malloc)
    libraries  file-backed pages (libpython, libc, pyarrow): approximate and an upper
               bound, since the kernel's "referenced" flag of a shared page is also
               set by other processes touching it (the benchmark's own Python)
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))
from bench_cpu import interleaved, sides  # noqa: E402
from bench_record import Recorder  # noqa: E402

from runctrace.workload.containers import make_bundle, make_rootfs, runc  # noqa: E402

_VMA = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def clear(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("1")  # 1: the accessed bits of every page


def referenced(pid: int) -> tuple[int, int]:
    """Pages touched since clear(): (private, libraries)."""
    private = libraries = 0
    path = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if _VMA.match(line):
            parts = line.split(maxsplit=5)
            path = parts[5] if len(parts) > 5 else ""
        elif line.startswith("Referenced:"):
            pages = int(line.split()[1]) // 4
            if path.startswith("/"):
                libraries += pages
            else:  # "", [heap], [stack]
                private += pages
    return private, libraries


def sample(backend: str, bundle: Path, tmp: Path, n: int, pythonpath: Optional[str]) -> dict[str, float]:
    rec = Recorder(backend, tmp / f"pages-{uuid.uuid4().hex[:6]}", pythonpath=pythonpath)
    per: dict[str, list[int]] = {"container": [], "container_libs": [], "flush": [], "flush_libs": []}
    try:
        rec.wait_idle()
        for _ in range(3):  # warm-up: first conversions, first flush
            runc("run", f"pg-{uuid.uuid4().hex[:10]}", cwd=bundle)
        time.sleep(1.5)
        pid = rec.proc.pid
        for _ in range(n):
            clear(pid)
            runc("run", f"pg-{uuid.uuid4().hex[:10]}", cwd=bundle)
            time.sleep(0.3)
            private, libs = referenced(pid)
            per["container"].append(private)
            per["container_libs"].append(libs)
            clear(pid)
            time.sleep(1.2)
            private, libs = referenced(pid)
            per["flush"].append(private)
            per["flush_libs"].append(libs)
    finally:
        rec.stop()
    return {k: statistics.median(v) for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("-n", type=int, default=20, help="containers per recorder")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--against", help="a commit to compare with, interleaved")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        tmp = Path(d)
        bundle = make_bundle(tmp / "b", make_rootfs(tmp / "rootfs"), ["true"], name="x")
        with sides(args.against, tmp) as compared:
            print("pages touched (medians)        per container: private  libraries"
                  "     per flush: private  libraries")
            for backend in args.backends.split(","):
                results = interleaved(compared, args.rounds, lambda path: sample(backend, bundle, tmp, args.n, path))
                for name, rs in results.items():
                    m = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                    print(f"{backend:9} {name:>10}                   {m['container']:7.0f}  {m['container_libs']:9.0f}"
                          f"                {m['flush']:7.0f}  {m['flush_libs']:9.0f}", flush=True)


if __name__ == "__main__":
    main()
