"""Finding recordings (analysis.scan.find) without reading any rows."""

from __future__ import annotations

import os

from runctrace.analysis import scan


def test_a_directory_with_no_recordings_says_what_it_passed_by(tmp_path):
    host = tmp_path / "host=n1"
    host.mkdir()
    os.mkfifo(host / "x.parquet")
    (host / ".journal-1-2.jsonl").write_text("")
    (host / ".part-1.tmp").write_text("")  # a file in flight: passed silently
    found = scan.find(tmp_path)
    assert found.infos == [] and found.sources == [(str(tmp_path), [], str(tmp_path))]
    text = "\n".join(found.notes)
    assert "no .parquet files" in text
    assert "1 recorder journal(s)" in text
    assert f"skipped {host / 'x.parquet'}: a FIFO, not a regular file" in text


def test_hive_keys_in_path_order():
    base = "/d"
    files = ["/d/host=a/date=2026-01-01/part.parquet", "/d/host=b/x.parquet", "/d/plain/y.parquet"]
    assert scan.hive_keys(files, base) == ["host", "date"]
