"""Text from container creators in ``runctrace report``: read back as the bytes it was,
shown so that it cannot act on the terminal or break JSON, CSV or markdown.

The recordings are built by hand, as the recorder stores such values
(:mod:`runctrace.safetext`): a value that is not valid UTF-8 escaped, and the row's
``escaped`` column naming it. Files without that column are covered elsewhere.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runctrace import safetext
from runctrace.analysis import churn, fields, io
from runctrace.analysis import sample as s
from runctrace.analysis.report import ReportOptions, build_report


def odd(raw: bytes) -> str:
    """Bytes as Python holds them once read from the kernel (surrogate escapes)."""
    return os.fsdecode(raw)


# A screen clear, a forged line of the recorder's own output, a byte that is not
# UTF-8, a terminal title, a bidirectional override, rich markup, markdown, mathtext.
ODD_ID = odd(b"evil\x1b[2J\nadd fake-container\xff")
ODD_ARGS = ["sh", "-c", odd(b"\x1b]0;pwned\x07 \xe2\x80\xae gnp.exe \xfe [bold]x[/] |cell| <b>"),
            "\nadd fake-container 00:00:01"]
ODD_HOSTNAME = odd(b"$\\frac$[/]\xc2\x9b31m\xff")  # a C1 CSI, as UTF-8
ODD_POD = odd(b"pod\r\x1b[31mred\xff")
ODD_IMAGE = "ghcr.io/x/y:\x1b[2J\n"  # valid UTF-8: stored as it is, shown escaped
LITERAL = "lit\\xff\\\\"  # valid UTF-8 that looks like an escape: never undone
TEXT_COLUMNS = ("container_id", "bundle", "process_args", "hostname", "pod_name", "image_name", "annotations")
K8S = s.kubernetes("prod", "placeholder", "app", "placeholder")


def stored(rows) -> pa.Table:
    """``rows`` (sample rows with odd values put in) as the recorder stores them."""
    escaped = [safetext.store(row, TEXT_COLUMNS) for row in rows]
    t = s.table([{k: v for k, v in r.items() if k != "escaped"} for r in rows])
    if "escaped" in t.column_names:  # the schema may or may not have it yet
        t = t.drop_columns(["escaped"])
    return t.append_column("escaped", pa.array(escaped, pa.list_(pa.string())))


def hostile_rows():
    """A crash loop started by hand whose ID, argv and hostname hold odd bytes; one of
    Kubernetes whose pod and image do; and a container whose ID only looks escaped."""
    rows = []
    for i in range(6):
        cid, t = f"{ODD_ID}-{i}", 5.0 * i
        for row in (s.add("x", t, runtime_root="/run/runc"),
                    s.remove("x", t + 1, runtime_root="/run/runc", exit_code=1, started=t)):
            row.update(container_id=cid, bundle=f"/run/bundles/{cid}", process_args=list(ODD_ARGS), hostname=ODD_HOSTNAME)
            rows.append(row)
        cid = f"k8s-{i}"
        for row in (s.add(cid, t, annotations=K8S), s.remove(cid, t + 2, annotations=K8S, exit_code=2, started=t)):
            row.update(pod_name=ODD_POD, image_name=ODD_IMAGE)
            rows.append(row)
    rows.append(s.add(LITERAL, 40, runtime_root="/run/runc"))
    return rows


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "hostile.parquet"
    pq.write_table(stored(hostile_rows()), path)
    return path


# ---------------------------------------------------------------- reading


def test_escaped_values_are_read_back_as_the_bytes_they_were(recording):
    ev = io.load_events(recording, columns=["container_id", "bundle", "process_args", "hostname", "command",
                                            "pod_name", "image_name"])
    assert "escaped" not in ev.columns
    first = ev.iloc[0]
    assert first.container_id == f"{ODD_ID}-0"
    assert os.fsencode(first.container_id) == b"evil\x1b[2J\nadd fake-container\xff-0"
    assert first.bundle == f"/run/bundles/{ODD_ID}-0"
    assert list(first.process_args) == ODD_ARGS
    assert first.command == " ".join(ODD_ARGS)  # derived from the stored argv, undone with it
    assert first.hostname == ODD_HOSTNAME
    k8s = ev[ev.container_id == "k8s-0"].iloc[0]
    assert (k8s.pod_name, k8s.image_name) == (ODD_POD, ODD_IMAGE)
    assert ev.container_id.iloc[-1] == LITERAL  # not named in its row's `escaped`: as stored


def test_table_keeps_the_stored_form_and_says_which_columns(recording):
    t = io.open_recordings(recording).table(columns=["container_id"])
    assert t.column("container_id")[0].as_py() == safetext.escape(f"{ODD_ID}-0")
    assert t.column("escaped")[0].as_py() == ["container_id", "bundle", "process_args", "hostname"]
    assert t.column("escaped")[-1].as_py() is None


def test_escaped_is_returned_when_asked_for(recording):
    ev = io.load_events(recording, columns=["container_id", "escaped"])
    assert list(ev.escaped.iloc[0]) == ["container_id", "bundle", "process_args", "hostname"]
    assert ev.container_id.iloc[0] == f"{ODD_ID}-0"


def test_the_analysis_pairs_and_groups_by_the_original_strings(recording):
    rec = io.open_recordings(recording)
    report = build_report(rec.events(), ReportOptions(restart_threshold=3, by="command"))
    assert report.summary["ended"] == 12 and report.lifetime["containers"] == 12
    assert " ".join(ODD_ARGS) in report.top.group.tolist()
    loops = report.restart_loops.set_index("kind").logical_container.to_dict()
    assert loops["host"] == f"node1: by-hand/{ODD_HOSTNAME} {' '.join(ODD_ARGS)}"
    assert loops["kubernetes"] == f"prod/{ODD_POD}/app"
    by_image = build_report(rec.events(), ReportOptions(by="image")).top
    assert ODD_IMAGE in by_image.group.tolist()


@pytest.mark.parametrize("by", sorted(churn.BY_COLUMNS))
def test_every_grouping_works_on_such_names(recording, by):
    top = build_report(io.load_events(recording), ReportOptions(by=by, top=100)).top
    assert top.containers.sum() == 13


def test_functions_called_on_their_own_take_such_names(recording):
    ev = io.load_events(recording, columns=["container_id", "process_args", "hostname"])
    assert "command" not in ev.columns
    lives = ev.pipe(fields.derive_all).pipe(churn.lifetimes)  # command joined here, not by the reader
    assert " ".join(ODD_ARGS) in set(lives.command)
    q = churn.lifetime_quantiles(lives, by=["hostname"]).set_index("hostname")
    assert q.loc[ODD_HOSTNAME, "containers"] == 6


def test_an_escaped_list_naming_other_columns_changes_nothing_else(tmp_path):
    rows = [s.add("a", 0), s.add("b\\\\x41", 1)]
    t = s.table(rows)
    if "escaped" in t.column_names:
        t = t.drop_columns(["escaped"])
    t = t.append_column("escaped", pa.array([["time", "exit_code", "no_such_column", "escaped"], ["container_id"]],
                                            pa.list_(pa.string())))
    pq.write_table(t, tmp_path / "x.parquet")
    ev = io.load_events(tmp_path / "x.parquet")
    assert ev.container_id.tolist() == ["a", "b\\x41"]  # only the column the row names is undone
    assert ev.time.tolist() == [s.BASE, s.BASE + pd.Timedelta(seconds=1)]
    assert ev.container_id.dtype != object  # nothing odd in it: pandas strings still


# ---------------------------------------------------------------- output


def report(*args, env=None) -> subprocess.CompletedProcess:
    """``runctrace report`` as an operator runs it: real stdout and stderr, as bytes."""
    env = {**os.environ, "COLUMNS": "400", **(env or {})}  # wide: a cell on one line
    return subprocess.run([sys.executable, "-m", "runctrace", "report", *map(str, args)],
                          capture_output=True, timeout=120, env=env)


def assert_inert(raw: bytes) -> str:
    """Terminal output that runs nothing: UTF-8, no control byte but newlines, no
    override, and no line that the data began."""
    text = raw.decode("utf-8")  # strict: no stray byte got through
    assert not any(ch in text for ch in "\x1b\x07\r\x9b\u202e"), text
    assert not any(line.lstrip("│| ").startswith("add fake") for line in text.splitlines())
    return text


LOOP_ARGS = ["--restart-threshold", "3", "--by", "command"]


def test_table_shows_escapes_and_runs_none(recording):
    res = report(recording, *LOOP_ARGS)
    assert res.returncode == 0, res.stderr
    out = assert_inert(res.stdout)
    shown = safetext.printable(" ".join(ODD_ARGS))
    assert shown.startswith("sh -c \\x1b]0;pwned\\x07 \\u202e gnp.exe \\xfe [bold]x[/] |cell| <b> \\x0aadd fake")
    assert shown in out  # the top churner, as one line
    assert f"node1: by-hand/{safetext.printable(ODD_HOSTNAME)} {shown}" in out  # the restart loop
    res = report(recording, "--by", "image")
    assert "ghcr.io/x/y:\\x1b[2J\\x0a" in assert_inert(res.stdout)


def test_markdown_keeps_each_row_in_its_cells(recording):
    res = report(recording, *LOOP_ARGS, "--format", "markdown")
    out = assert_inert(res.stdout)
    rows = [line for line in out.splitlines() if line.startswith("| node1: by-hand/")]
    assert len(rows) == 1
    cells = [c for c in re.split(r"(?<!\\)\|", rows[0])[1:-1]]  # split on pipes markdown sees
    assert len(cells) == 7
    assert re.search(r"(?<!\\)<b>", out) is None and "\\<b>" in out and "\\[bold\\]" in out


def test_json_is_valid_and_plain_ascii(recording):
    res = report(recording, *LOOP_ARGS, "--format", "json")
    assert res.returncode == 0, res.stderr
    assert res.stdout.isascii()
    doc = json.loads(res.stdout)
    # Bytes that were not UTF-8: in the stored (escaped) form; valid text: exactly.
    assert safetext.escape(" ".join(ODD_ARGS)) in [r["group"] for r in doc["top"]["rows"]]
    loops = {loop["kind"]: loop for loop in doc["restart_loops"]}
    assert loops["host"]["hostname"] == safetext.escape(ODD_HOSTNAME)
    assert loops["kubernetes"]["pod_name"] == safetext.escape(ODD_POD)
    assert loops["kubernetes"]["image_name"] == ODD_IMAGE


def test_csv_is_valid_and_keeps_fields_whole(recording):
    res = report(recording, *LOOP_ARGS, "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.reader(_io.StringIO(res.stdout.decode("utf-8"), newline="")))
    assert all(len(r) == 4 for r in rows)
    loop = safetext.escape(f"node1: by-hand/{ODD_HOSTNAME} {' '.join(ODD_ARGS)}")
    assert ["restart_loops", loop, "restarts", "5"] in rows
    assert ["restart_loops", "prod/" + safetext.escape(ODD_POD) + "/app", "image_name", ODD_IMAGE] in rows


def test_plots_take_such_names(recording, tmp_path):
    page = tmp_path / "churn.html"
    res = report(recording, *LOOP_ARGS, "--plot", page)  # a "$\frac$" in a label is not mathtext
    assert res.returncode == 0, res.stderr
    assert_inert(page.read_bytes())


def test_notes_and_errors_quote_file_names_as_text(recording, tmp_path):
    data = tmp_path / "data"
    s.write_dataset([s.add("a", 0)], data)
    day = next(data.glob("host=*/date=*"))
    os.mkfifo(os.path.join(os.fsencode(day), b"x\x1b[2J\nadd fake[bold]\xff.parquet"))
    res = report(data, "--format", "json")
    assert res.returncode == 0, res.stderr
    notes = [line for line in assert_inert(res.stderr).splitlines() if line.startswith("runctrace: note: ")]
    assert len(notes) == 1 and notes[0].endswith("/x\\x1b[2J\\x0aadd fake[bold]\\xff.parquet: a FIFO, not a regular file")
    assert "x\\u001b[2J\\nadd fake[bold]\\\\xff.parquet" in res.stdout.decode()  # the JSON's notes
    assert "x\\x1b[2J\\x0aadd fake[bold]\\xff.parquet" in assert_inert(report(data).stdout)  # the table's

    bad = os.path.join(os.fsencode(tmp_path), b"bad\x1b[2J[bold]\xff.parquet")
    with open(bad, "wb") as f:
        f.write(b"not parquet")
    res = report(os.fsdecode(bad))
    assert res.returncode == 1
    err = assert_inert(res.stderr)
    assert err.count("\n") == 1 and err.startswith("runctrace: error: ") and "bad\\x1b[2J[bold]\\xff.parquet" in err


def test_what_the_recorder_itself_writes_is_read_back(tmp_path):
    # The recorder's own row maker (schema.event_to_row, through sample) decides
    # what is escaped; the reader must undo exactly that.
    # (Not in the spec: a spec is valid UTF-8, or it is not recorded.)
    rows = [s.add(ODD_ID, 0), s.remove(ODD_ID, 1, exit_code=0, started=0)]
    path = s.write_file(rows, tmp_path / "r.parquet")
    ev = io.load_events(path, columns=["container_id", "bundle", "runtime_args"])
    assert ev.container_id.tolist() == [ODD_ID, ODD_ID]
    assert ev.bundle.iloc[0] == f"/run/bundles/{ODD_ID}"
    assert list(ev.runtime_args.iloc[0])[-1] == ODD_ID
    assert build_report(io.load_events(path)).summary["ended"] == 1
