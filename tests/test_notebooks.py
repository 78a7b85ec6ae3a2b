"""The churn notebook runs top to bottom on a recording, with nbclient.

The dataset is the ``churn_dataset`` fixture: for now a hand-made recording in the
real schema and layout (runctrace.analysis.sample). To run the notebook on a real
recording instead, set RUNCTRACE_NOTEBOOK_DATASET=/path/to/runctrace-data, or
replace the fixture (e.g. with one that records real containers).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from runctrace.analysis import sample as s

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "churn.ipynb"


def hand_made_recording(directory: Path) -> Path:
    """A small day on two hosts: services, a batch of jobs, a crash loop, runc by hand,
    a container already running at the start, one whose start is before the data."""
    web = s.kubernetes("prod", "web-7d9f", "nginx", "docker.io/library/nginx:1.25")
    crash = s.kubernetes("prod", "api-5c4b", "api", "ghcr.io/example/api:2.3")
    rows = [s.initial("svc", 0, host="node1", annotations=web, pid=100),
            s.remove("old", 30, host="node2", exit_code=0, started=-3600)]
    for i in range(40):  # jobs
        job = s.kubernetes("batch", f"report-{i}", "report", "ghcr.io/example/report:1")
        rows += [s.add(f"job{i}", 60 + i * 90, host="node2", annotations=job),
                 s.remove(f"job{i}", 60 + i * 90 + 20 + i, host="node2", annotations=job, exit_code=0 if i % 7 else 1,
                          started=60 + i * 90)]
    t = 100.0
    for i in range(9):  # the kubelet's back-off
        rows += [s.add(f"crash{i}", t, host="node1", annotations=crash),
                 s.remove(f"crash{i}", t + 2, host="node1", annotations=crash, signal=9 if i % 3 == 0 else None,
                          exit_code=None if i % 3 == 0 else 1, started=t)]
        t += 2 + min(10 * 2 ** i, 300)
    for i in range(6):  # a script running runc by hand
        kw = dict(host="node1", runtime_root="/run/runc", hostname="runc", args=["sh", "-c", "exit 3"])
        rows += [s.add(f"hand{i}", 200 + i * 30, **kw), s.remove(f"hand{i}", 201 + i * 30, exit_code=3, started=200 + i * 30, **kw)]
    s.write_dataset(rows, directory, stats={"adds": len(rows) // 2, "removes": len(rows) // 2, "lost": 0, "missed": 0})
    return directory


@pytest.fixture(scope="module")
def churn_dataset(tmp_path_factory) -> str:
    """The recording the notebook runs on (swap this for a real recording)."""
    if os.environ.get("RUNCTRACE_NOTEBOOK_DATASET"):
        return os.environ["RUNCTRACE_NOTEBOOK_DATASET"]
    return str(hand_made_recording(tmp_path_factory.mktemp("recording")))


def run_notebook(dataset: str, monkeypatch) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("RUNCTRACE_DATASET", dataset)  # the parameters cell reads it
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def outputs(nb, output_type=None):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if output_type is None or o.output_type == output_type]


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'os.environ.get("RUNCTRACE_DATASET"' in tagged[0].source


def test_notebook_runs_top_to_bottom_on_a_recording(churn_dataset, monkeypatch):
    nb = run_notebook(churn_dataset, monkeypatch)
    assert not outputs(nb, "error")
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # starts/stops + running, lifetimes, restart loops
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "events from" in text and "restarted at least" in text
    if not os.environ.get("RUNCTRACE_NOTEBOOK_DATASET"):
        assert "2 logical container(s) restarted" in text  # the crash loop and the script


def test_notebook_runs_on_an_empty_recording(tmp_path, monkeypatch):
    s.write_file([], tmp_path / "empty.parquet")
    nb = run_notebook(str(tmp_path / "empty.parquet"), monkeypatch)
    assert not outputs(nb, "error")
