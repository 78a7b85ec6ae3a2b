"""Real containers to report: record a churn with a crash loop, then `report` and the
notebook find the loop in it. The recording is made once, on the best backend here."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from test_notebooks import outputs, run_notebook

RUNCTRACE = [sys.executable, "-m", "runctrace"]
pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def real_recording(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("real") / "data"
    rec = subprocess.Popen([*RUNCTRACE, "record", "-q", "-o", str(out)], stderr=subprocess.PIPE, text=True)
    assert "recording to" in rec.stderr.readline()
    subprocess.run([*RUNCTRACE, "churn", "-n", "20", "-c", "4", "--crash-loop", "6", "--lifetime", "uniform:0-0.3"],
                   check=True, capture_output=True, timeout=300)
    time.sleep(0.5)
    rec.send_signal(signal.SIGINT)
    assert rec.wait(60) == 0, rec.stderr.read()
    return str(out)


def test_report_finds_the_crash_loop(real_recording):
    res = subprocess.run([*RUNCTRACE, "report", real_recording, "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    loops = report["restart_loops"]
    assert any("crashing; exit 1" in json.dumps(loop) for loop in loops), loops
    assert report["summary"]["starts"] >= 26 and report["summary"]["stops"] >= 26


def test_notebook_runs_on_a_real_recording(real_recording, monkeypatch):
    nb = run_notebook(real_recording, monkeypatch)
    assert not outputs(nb, "error")
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "restarted at least" in text
