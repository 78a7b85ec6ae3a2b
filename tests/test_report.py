"""``runctrace report``: every format, plots, filters and the edge cases, through the CLI."""

from __future__ import annotations

import csv
import io as _io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import runctrace.cli.report  # noqa: F401  (registers the command, as runctrace.cli.main() does)
from runctrace.analysis import sample as s
from runctrace.analysis.report import CSV_COLUMNS, LOOP_FIELDS, REPORT_FORMAT, TIMELINE_FIELDS, TOP_FIELDS
from runctrace.cli import app

runner = CliRunner()

API = s.kubernetes("prod", "api-5c4b", "api", "ghcr.io/example/api:2.3")
WEB = s.kubernetes("prod", "web-7d9f", "nginx", "docker.io/library/nginx:1.25")


def recording_rows():
    rows = [s.add("web", 0, host="node1", annotations=WEB), s.add("d1", 5, host="node2", runtime_root="/run/docker/runtime-runc/moby"),
            s.remove("d1", 65, host="node2", runtime_root="/run/docker/runtime-runc/moby", exit_code=0, started=5)]
    t = 10.0
    for i in range(8):  # a crash loop with the kubelet's back-off
        rows += [s.add(f"api{i}", t, host="node1", annotations=API),
                 s.remove(f"api{i}", t + 1.5, host="node1", annotations=API, exit_code=1, started=t)]
        t += 1.5 + min(10 * 2 ** i, 300)
    return rows


@pytest.fixture
def recording(tmp_path):
    s.write_dataset(recording_rows(), tmp_path / "data", stats={"adds": 10, "removes": 9, "lost": 2, "missed": 0})
    return str(tmp_path / "data")


def report(*args):
    return runner.invoke(app, ["report", *map(str, args)])


def test_table_is_the_default(recording):
    res = report(recording)
    assert res.exit_code == 0, res.output
    for title in ("Summary", "Lifetimes", "How containers ended", "Top churners by image", "Restart loops", "Starts, stops"):
        assert title in res.output
    assert "prod/api-5c4b/api" in res.output
    assert "4 / 0" in res.output  # lost / missed: two recorders (one per host) lost 2 each


def test_json_shape(recording):
    res = report(recording, "--format", "json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["format"] == REPORT_FORMAT
    assert set(doc) >= {"options", "dataset", "summary", "lifetime_s", "exits", "top", "restart_loops", "timeline",
                        "lifetime_histogram", "notes"}
    assert doc["dataset"]["events"] == 19 and doc["dataset"]["hosts"] == ["node1", "node2"]
    assert doc["dataset"]["recorder_lost"] == 4  # each host's recorder lost 2
    assert doc["summary"]["starts"] == 10 and doc["summary"]["running_at_end"] == 1
    assert doc["summary"]["restart_loops"] == 1
    assert doc["lifetime_s"]["containers"] == 9 and doc["lifetime_s"]["p50"] == pytest.approx(1.5)
    loop = doc["restart_loops"][0]
    assert list(loop) == LOOP_FIELDS
    assert loop["logical_container"] == "prod/api-5c4b/api" and loop["restarts"] == 7 and loop["last_exit_code"] == 1
    assert loop["window_start"].endswith("Z")
    assert list(doc["top"]["rows"][0]) == TOP_FIELDS and doc["top"]["by"] == "image"
    assert list(doc["timeline"][0]) == TIMELINE_FIELDS
    assert sum(r["starts"] for r in doc["timeline"]) == 10
    assert doc["options"]["window_s"] == 3600


def test_csv_is_one_tidy_table(recording):
    res = report(recording, "--format", "csv")
    assert res.exit_code == 0
    rows = list(csv.reader(_io.StringIO(res.stdout)))
    assert rows[0] == CSV_COLUMNS
    sections = {r[0] for r in rows[1:]}
    assert {"options", "dataset", "summary", "lifetime_s", "exits", "top_by_image", "restart_loops", "timeline"} <= sections
    summary = {r[2]: r[3] for r in rows if r[0] == "summary"}
    assert summary["starts"] == "10"
    assert ["restart_loops", "prod/api-5c4b/api", "restarts", "7"] in rows


def test_markdown(recording):
    res = report(recording, "--format", "markdown", "--by", "pod")
    assert res.exit_code == 0
    assert res.stdout.startswith("# runctrace report")
    assert "## Top churners by pod" in res.stdout and "| prod/api-5c4b |" in res.stdout
    assert "|---" in res.stdout


@pytest.mark.parametrize("by, expected", [("image", "ghcr.io/example/api:2.3"), ("pod", "prod/api-5c4b"),
                                          ("namespace", "prod"), ("manager", "docker"), ("host", "node2")])
def test_by(recording, by, expected):
    doc = json.loads(report(recording, "--format", "json", "--by", by).stdout)
    assert expected in [r["group"] for r in doc["top"]["rows"]]


def test_options_change_the_answers(recording):
    def summary(*args):
        return json.loads(report(recording, "--format", "json", *args).stdout)["summary"]

    assert summary("--restart-threshold", "8")["restart_loops"] == 0
    assert summary("--restart-threshold", "3", "--window", "2m")["restart_loops"] == 1
    assert summary("--short-lived", "1")["short_lived"] == 0
    assert summary("--short-lived", "2")["short_lived"] == 8
    doc = json.loads(report(recording, "--format", "json", "--interval", "5m").stdout)
    assert doc["options"]["interval_s"] == 300


def test_filters(recording):
    def events(*args):
        return json.loads(report(recording, "--format", "json", *args).stdout)["dataset"]["events"]

    assert events("--host", "node2") == 2
    assert events("--namespace", "pr*") == 17
    assert events("--image", "*nginx*") == 1
    # d1's remove at 65 s, the crash loop's 5th run at 84.5 s and 86 s
    assert events("--since", "2026-01-01T00:01:00", "--until", "2026-01-01T00:02:00") == 3


def test_plots(recording, tmp_path):
    png, html = tmp_path / "churn.png", tmp_path / "churn.html"
    assert report(recording, "--plot", png).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = report(recording, "--format", "json", "--plot", html)
    assert res.exit_code == 0 and json.loads(res.stdout)["format"] == REPORT_FORMAT  # stdout stays pure JSON
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page


def test_plot_needs_png_or_html(recording, tmp_path):
    res = report(recording, "--plot", tmp_path / "churn.svg")
    assert res.exit_code == 1 and "must end in .png or .html" in res.output


def test_empty_dataset_says_so_and_exits_0(tmp_path):
    s.write_file([], tmp_path / "empty.parquet")
    res = report(tmp_path / "empty.parquet")
    assert res.exit_code == 0 and "no events in" in res.output
    res = report(tmp_path / "empty.parquet", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["dataset"]["events"] == 0
    (tmp_path / "nothing").mkdir()
    assert report(tmp_path / "nothing").exit_code == 0


def test_filters_that_match_nothing(recording):
    res = report(recording, "--host", "node9")
    assert res.exit_code == 0 and "no events match the filters" in res.output


def test_not_a_recording_is_one_error_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    res = report(tmp_path / "notes.txt")
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("runctrace: error:") and "not a runctrace recording" in lines[0]
    pq.write_table(pa.table({"x": [1]}), tmp_path / "x.parquet")
    res = report(tmp_path / "x.parquet")
    assert res.exit_code == 1 and "no column type, container_id" in res.output


def test_version_1_file_is_read_with_a_note(tmp_path):
    from runctrace.store.schema import SCHEMA

    v1 = pa.schema(list(SCHEMA)[:20], metadata={b"runctrace.schema_version": b"1"})
    pq.write_table(s.table(recording_rows()).select(v1.names).cast(v1), tmp_path / "old.parquet")
    res = report(tmp_path / "old.parquet", "--format", "json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["restart_loops"][0]["logical_container"] == "prod/api-5c4b/api"
    assert any("predate schema version 2" in n for n in doc["notes"])


def test_bad_option_values_are_one_error_line(recording):
    for args in (["--since", "yesterday-ish"], ["--window", "soon"], ["--interval", "often"]):
        res = report(recording, *args)
        assert res.exit_code == 1 and "runctrace: error:" in res.output, args


def test_help_has_worked_examples():
    res = runner.invoke(app, ["report", "--help"])
    assert res.exit_code == 0
    assert "Examples:" in res.output and "--format json" in res.output and "section,key,metric,value" in res.output
