#!/usr/bin/env python3
"""The recorder's memory with large OCI specs, measured side by side in one run.

    sudo .venv/bin/python bench/bench_bigspec.py [--backends fanotify,bcc] [-n 100] [--mib 16]
                                                  [--against COMMIT]

For each backend, `runctrace record -q` into a fresh dataset while N sequential
`runc run` containers start and end, once with ordinary specs (a few KiB) and once
with specs of about --mib MiB (one large annotation: runc accepts it, and the
recorder reads config.json up to 16 MiB). Prints the recorder's peak RSS (VmHWM,
sampled until it has exited, so its final write counts) for both, their ratio, and
how many containers were recorded with their spec. With --against COMMIT, that
commit's recorder is measured the same way, in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import sides  # noqa: E402
from bench_record import Recorder  # noqa: E402

from runctrace.workload.containers import make_bundle, make_rootfs, runc  # noqa: E402


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def big_bundle(base: Path, rootfs: Path, mib: float) -> Path:
    bundle = make_bundle(base, rootfs, ["true"])
    cfg = json.loads((bundle / "config.json").read_text())
    size = int(mib * (1 << 20)) - len(json.dumps(cfg)) - 64  # the whole file within the cap
    cfg["annotations"] = {"bench/big": "x" * size}
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


def measure(backend: str, bundle: Path, n: int, work: Path, pythonpath) -> dict:
    out = work / f"data-{uuid.uuid4().hex[:6]}"
    rec = Recorder(backend, out, pythonpath)
    peak = [0]
    done = threading.Event()

    def sample() -> None:  # VmHWM until the process is gone: its last write counts
        while not done.is_set():
            peak[0] = max(peak[0], _status_kib(rec.proc.pid, "VmHWM:"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rec.wait_idle()
        start_rss = rec.rss_kib()
        ids = [f"big-{uuid.uuid4().hex[:8]}" for _ in range(n)]
        for cid in ids:
            runc("run", cid, cwd=bundle)
        time.sleep(2.0)  # let the last removes arrive before the stop
        steady_rss = rec.rss_kib()
    finally:
        err = rec.stop()
        done.set()
        sampler.join()
    try:
        rows = pq.read_table(out, columns=["container_id", "type", "config_json"]).to_pylist()
    except (OSError, ValueError) as failure:  # (pyarrow's errors are both) nothing readable was written
        print(f"# {backend}: nothing readable in {out} ({failure}); the recorder said: {err.strip()[-300:]}")
        rows = []
    mine = [r for r in rows if r["container_id"] in set(ids)]
    return {
        "start_mib": start_rss / 1024, "steady_mib": steady_rss / 1024, "peak_mib": peak[0] / 1024,
        "adds": sum(r["type"] == "add" for r in mine),
        "specs": sum(r["type"] == "add" and r["config_json"] is not None for r in mine),
        "removes": sum(r["type"] == "remove" for r in mine),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--mib", type=float, default=16.0)
    ap.add_argument("--against")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rootfs = make_rootfs(tmp / "rootfs")
        small = make_bundle(tmp / "bundles", rootfs, ["true"])
        big = big_bundle(tmp / "bundles", rootfs, args.mib)
        print(f"# {args.n} sequential containers a run; large specs: {big.joinpath('config.json').stat().st_size / 2**20:.1f} MiB")
        print(f"{'backend':<9} {'side':<9} {'specs':<6} {'start':>7} {'steady':>7} {'peak':>7}  recorded (add/spec/remove)")
        with sides(args.against, tmp) as side_list:
            for backend in args.backends.split(","):
                for name, pythonpath in side_list:
                    results = {}
                    for label, bundle in (("small", small), ("large", big)):
                        r = results[label] = measure(backend, bundle, args.n, tmp, pythonpath)
                        print(f"{backend:<9} {name:<9} {label:<6} {r['start_mib']:6.1f}M {r['steady_mib']:6.1f}M "
                              f"{r['peak_mib']:6.1f}M  {r['adds']}/{r['specs']}/{r['removes']}", flush=True)
                    print(f"{backend:<9} {name:<9} peak large/small: {results['large']['peak_mib'] / results['small']['peak_mib']:.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
