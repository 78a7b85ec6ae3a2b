"""The README's first command: record a small burst of real containers, then report.

    python -m runctrace.workload.demo [--backend fanotify] [--output runctrace-demo.parquet]

It starts ``runctrace record`` exactly as an operator would, drives runc in every
style a manager uses (and containerd, through ``ctr run``), including a container
that crash-loops, stops the recorder with SIGINT and runs ``runctrace report``.
Needs root, runc, containerd and busybox-static (bootstrap.sh installs them).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from runctrace.workload.containers import PrivateContainerd, make_bundle, make_rootfs, runc


def workload(base: Path) -> None:
    rootfs = make_rootfs(base / "rootfs")
    bundles = base / "bundles"
    tag = uuid.uuid4().hex[:4]
    say = lambda msg: print(f"demo: {msg}", file=sys.stderr, flush=True)  # noqa: E731

    say("5 x `runc run` of short jobs")
    job = make_bundle(bundles, rootfs, ["sh", "-c", "sleep 0.1"], name="job")
    for i in range(5):
        runc("run", f"demo-job-{tag}-{i}", cwd=job)

    say("2 x `runc run -d` services, killed by `runc delete --force`")
    svc = make_bundle(bundles, rootfs, ["sleep", "60"], name="svc")
    services = [f"demo-svc-{tag}-{i}" for i in range(2)]
    for cid in services:
        runc("run", "-d", "--bundle", str(svc), cid)
    time.sleep(0.5)
    for cid in services:
        runc("delete", "--force", cid)  # SIGKILL: a `sleep` as PID 1 ignores SIGTERM

    say("a crash loop: the same container failing 6 times")
    crash = make_bundle(bundles, rootfs, ["sh", "-c", "echo starting; exit 1"], name="crashloop")
    for _ in range(6):
        runc("run", f"demo-crashloop-{tag}", cwd=crash, check=False)

    say("2 x `create --pid-file` / `start` / `delete`, as containerd's shim does")
    for i in range(2):
        cid = f"demo-shim-{tag}-{i}"
        runc("--log-format", "json", "create", "--bundle", str(job), "--pid-file", str(base / f"{cid}.pid"), cid)
        runc("start", cid)
        time.sleep(0.2)
        runc("delete", "--force", cid)

    say("2 x containerd `ctr run --rm`")
    with PrivateContainerd(base / "containerd", namespace="runctrace-demo") as containerd:
        for i in range(2):
            rfs = base / f"ctr-rootfs-{i}"
            subprocess.run(["cp", "-a", str(rootfs), str(rfs)], check=True)
            subprocess.run(containerd.run_cmd(rfs, f"demo-ctr-{tag}-{i}", "/bin/sh", "-c", "sleep 0.2"),
                           check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctrace.workload.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="fanotify")
    parser.add_argument("--output", default="runctrace-demo.parquet")
    args = parser.parse_args(argv)
    runctrace = [sys.executable, "-m", "runctrace"]
    recorder = subprocess.Popen(
        [*runctrace, "record", "--backend", args.backend, "--output", args.output],
        stderr=subprocess.PIPE, text=True,
    )
    first = recorder.stderr.readline()
    sys.stderr.write(first)
    if "recording to" not in first:
        sys.stderr.write(recorder.stderr.read())
        return recorder.wait() or 1
    try:
        with tempfile.TemporaryDirectory(prefix="runctrace-demo-") as tmp:
            workload(Path(tmp))
        time.sleep(0.5)
    finally:
        recorder.send_signal(signal.SIGINT)
        sys.stderr.write(recorder.stderr.read())
        recorder.wait()
    if recorder.returncode:
        return recorder.returncode
    print(f"\n$ runctrace report {args.output}", flush=True)
    return subprocess.call([*runctrace, "report", args.output])


if __name__ == "__main__":
    sys.exit(main())
