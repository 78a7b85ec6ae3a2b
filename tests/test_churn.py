"""`runctrace churn`: its workload is real, its ground truth scores a recording."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from runctrace.workload.generator import parse_lifetime
from runctrace.errors import RunctraceError

RUNCTRACE = [sys.executable, "-m", "runctrace"]


def test_lifetime_specs():
    import random

    rng = random.Random(0)
    assert parse_lifetime("fixed:0.25")(rng) == 0.25
    assert all(0.1 <= parse_lifetime("uniform:0.1-0.2")(rng) <= 0.2 for _ in range(100))
    assert parse_lifetime("exp:0")(rng) == 0.0
    with pytest.raises(RunctraceError, match="bad lifetime"):
        parse_lifetime("gauss:1")


@pytest.mark.root
@pytest.mark.parametrize("driver", ["run", "create"])
def test_recording_matches_ground_truth(tmp_path, driver):
    out, truth_file = tmp_path / "data", tmp_path / "truth.jsonl"
    rec = subprocess.Popen([*RUNCTRACE, "record", "--backend", "fanotify", "-q", "-o", str(out)],
                           stderr=subprocess.PIPE, text=True)
    assert "recording to" in rec.stderr.readline()
    subprocess.run([*RUNCTRACE, "churn", "-n", "30", "-c", "4", "--driver", driver, "--fail-share", "0.2",
                    "--crash-loop", "3", "--lifetime", "uniform:0-0.3", "--truth", str(truth_file)],
                   check=True, capture_output=True, timeout=300)
    time.sleep(0.5)
    rec.send_signal(signal.SIGINT)
    assert rec.wait(30) == 0
    truths = [json.loads(line) for line in truth_file.read_text().splitlines()]
    assert all(t["ok"] for t in truths), [t for t in truths if not t["ok"]]
    assert any(not t["expect_container"] for t in truths)  # the failures were exercised
    rows = pq.read_table(out).to_pylist()
    for t in truths:
        mine = [r for r in rows if r["container_id"] == t["container_id"] and r["container_pid"] == t["pid"]]
        if not t["expect_container"]:
            # runc may get as far as an init process before it fails (a bad binary is
            # found by `runc init`): then the recording shows that short life, and
            # its end is not a clean exit. It must never look like a success.
            failed = [r for r in rows if r["container_id"] == t["container_id"]]
            assert len(failed) in (0, 2), failed
            assert all(r["exit_code"] != 0 for r in failed if r["type"] == "remove"), failed
            continue
        assert sorted(r["type"] for r in mine) == ["add", "remove"], (t, mine)
        remove = next(r for r in mine if r["type"] == "remove")
        if driver == "run":  # create/start/delete may kill a container at its last instant
            assert remove["exit_code"] == t["exit_code"], (t, remove)
    loop = [t for t in truths if t["container_id"].endswith("-crashloop")]
    assert len(loop) == 3 and len({t["pid"] for t in loop}) == 3


def _default_sigint() -> None:
    # A shell that runs this test suite in the background (`cmd &` without job
    # control) starts it with SIGINT ignored, the churn inherits that, and
    # Python then installs no KeyboardInterrupt handler: Ctrl-C is what is tested.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_cleans_up_every_container(tmp_path, sig):
    """Ctrl-C, or a plain kill, stops the churn within seconds (its containers would
    live 10 s each, 40 of them), and leaves none of its containers behind."""
    proc = subprocess.Popen([*RUNCTRACE, "churn", "-n", "40", "-c", "4", "--driver", "create", "--lifetime", "fixed:10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    time.sleep(3)
    proc.send_signal(sig)
    proc.wait(30)
    left = subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout.split()
    assert not [c for c in left if c.startswith("churn-")], left
