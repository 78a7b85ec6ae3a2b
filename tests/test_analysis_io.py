"""Reading recordings: files, dataset directories, several hosts, filters, old schemas."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runctrace.analysis import churn, fields, io
from runctrace.analysis import sample as s
from runctrace.errors import RunctraceError
from runctrace.store.schema import SCHEMA

WEB = s.kubernetes("prod", "web-1", "app", "docker.io/library/nginx:1.25")
DB = s.kubernetes("data", "db-0", "postgres", "docker.io/library/postgres:16")


def two_hosts():
    return [
        s.add("a", 0, host="n1", annotations=WEB), s.remove("a", 10, host="n1", annotations=WEB, exit_code=0, started=0),
        s.add("b", 5, host="n2", annotations=DB), s.remove("b", 86_400 + 5, host="n2", annotations=DB, started=5),  # next day
        s.add("c", 20, host="n2", runtime_root="/run/runc"),
    ]


def test_single_file(tmp_path):
    path = s.write_file(two_hosts(), tmp_path / "rec.parquet", stats={"adds": 3, "removes": 2, "lost": 1})
    rec = io.open_recordings(path)
    ev = rec.events()
    assert len(ev) == 5 and ev.time_ns.is_monotonic_increasing
    assert set(ev.host) == {"n1", "n2"}
    assert rec.files.lost.tolist() == [1]


def test_dataset_directory_takes_host_from_the_path_and_pairs_across_days(tmp_path):
    paths = s.write_dataset(two_hosts(), tmp_path / "data")
    assert any("date=2026-01-02" in p for p in paths)
    assert "host" not in pq.read_schema(paths[0]).names  # the recorder's layout
    ev = io.load_events(tmp_path / "data")
    assert sorted(ev.host.unique()) == ["n1", "n2"]
    lives = churn.lifetimes(fields.derive_all(ev))
    b = lives[lives.container_id == "b"].iloc[0]
    assert b.status == "ended" and b.lifetime_s == pytest.approx(86_400)


def test_several_paths_at_once(tmp_path):
    rows = two_hosts()
    s.write_file([r for r in rows if r["host"] == "n1"], tmp_path / "n1.parquet")
    s.write_dataset([r for r in rows if r["host"] == "n2"], tmp_path / "n2")
    ev = io.load_events([tmp_path / "n1.parquet", tmp_path / "n2"])
    assert ev.groupby("host", observed=True).size().to_dict() == {"n1": 2, "n2": 3}


@pytest.mark.parametrize("layout", ["file", "dataset"])
def test_filters(tmp_path, layout):
    if layout == "file":
        path = s.write_file(two_hosts(), tmp_path / "rec.parquet")
    else:
        s.write_dataset(two_hosts(), tmp_path / "d")
        path = tmp_path / "d"
    rec = io.open_recordings(path)
    assert set(rec.events(hosts=["n2"]).container_id) == {"b", "c"}
    assert set(rec.events(since=s.BASE + pd.Timedelta(seconds=5), until=s.BASE + pd.Timedelta(seconds=20)).container_id) == {"a", "b"}
    assert set(rec.events(since="2026-01-02").container_id) == {"b"}
    assert set(rec.events(namespaces=["prod"]).container_id) == {"a"}
    assert set(rec.events(namespaces=["d*", "nope"]).container_id) == {"b"}
    assert set(rec.events(images=["*nginx*"]).container_id) == {"a"}
    assert set(rec.events(images=["docker.io/library/postgres:16"]).container_id) == {"b"}
    assert rec.events(hosts=["n9"]).empty


def test_tiny_row_groups_are_read_in_chunks(tmp_path):
    # A live recording writes a row group a second: thousands of tiny pieces.
    rows = []
    for i in range(300):
        rows += [s.add(f"c{i}", i, annotations=WEB if i % 2 else DB), s.remove(f"c{i}", i + 0.5, annotations=WEB if i % 2 else DB)]
    path = tmp_path / "tiny.parquet"
    pq.write_table(s.table(rows), path, row_group_size=3)
    ev = io.load_events(path)
    assert len(ev) == 600 and (ev.pod_namespace == "prod").sum() == 300


def version_1_table(rows):
    v1 = pa.schema(list(SCHEMA)[:20], metadata={b"runctrace.schema_version": b"1"})  # before enrichment
    return s.table(rows).select(v1.names).cast(v1)


def test_version_1_file_is_read_and_its_kubernetes_fields_derived(tmp_path):
    rows = [s.add("a", 0, annotations=WEB), s.add("x", 1, annotations=s.kubernetes("ns", "p", "c", "img", runtime="cri-o"),
                                                   runtime_root="/run/runc"), s.add("z", 2, runtime_root="/run/runc")]
    pq.write_table(version_1_table(rows), tmp_path / "old.parquet")
    rec = io.open_recordings(tmp_path / "old.parquet")
    assert any("predate schema version 2" in n for n in rec.notes)
    ev = fields.derive_all(rec.events())
    assert ev.pod_name.tolist()[:2] == ["web-1", "p"]
    assert ev.manager.tolist() == ["containerd", "cri-o", "by-hand"]
    assert set(rec.events(namespaces=["pro*"]).container_id) == {"a"}  # filtered after the scan


def test_version_1_and_2_mixed_in_one_directory(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(version_1_table([s.add("old", 0, annotations=WEB)]), tmp_path / "d" / "a.parquet")
    s.write_file([s.add("new", 1, annotations=DB)], tmp_path / "d" / "b.parquet")
    ev = fields.derive_all(io.load_events(tmp_path / "d"))
    assert dict(zip(ev.container_id, ev.pod_name)) == {"old": "web-1", "new": "db-0"}


def test_file_without_a_schema_version_is_read_with_a_note(tmp_path):
    pq.write_table(s.table([s.add("a", 0)]).replace_schema_metadata({}), tmp_path / "x.parquet")
    rec = io.open_recordings(tmp_path / "x.parquet")
    assert len(rec.events()) == 1 and any("no schema version" in n for n in rec.notes)


def test_newer_schema_version_is_read_with_a_note(tmp_path):
    t = s.table([s.add("a", 0)])
    t = t.append_column("future", pa.array([1])).replace_schema_metadata({"runctrace.schema_version": "9"})
    pq.write_table(t, tmp_path / "x.parquet")
    rec = io.open_recordings(tmp_path / "x.parquet")
    assert len(rec.events()) == 1 and any("newer runctrace" in n for n in rec.notes)


def test_compacted_sources_left_after_a_crash_are_not_counted_twice(tmp_path):
    d = tmp_path / "host=n1" / "date=2026-01-01"
    d.mkdir(parents=True)
    t = s.table([s.add("a", 0, host="n1"), s.remove("a", 1, host="n1")]).drop_columns(["host"])
    pq.write_table(t.slice(0, 1), d / "part-1.parquet")
    pq.write_table(t.slice(1, 1), d / "part-2.parquet")
    meta = dict(SCHEMA.metadata)
    meta[b"runctrace.compacted_from"] = json.dumps(["part-1.parquet", "part-2.parquet"]).encode()
    pq.write_table(t.replace_schema_metadata(meta), d / "compact-1.parquet")
    rec = io.open_recordings(tmp_path)
    assert len(rec.events()) == 2 and any("merged into a compact" in n for n in rec.notes)


def test_in_flight_and_hidden_files_are_ignored(tmp_path):
    s.write_dataset([s.add("a", 0)], tmp_path)
    d = next(tmp_path.glob("host=*/date=*"))
    (d / ".part-9-1-000001.parquet.tmp").write_bytes(b"half written")
    (d / "_SUCCESS").write_bytes(b"")
    assert len(io.load_events(tmp_path)) == 1


def test_not_a_parquet_file_is_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RunctraceError, match="notes.txt is not a runctrace recording: not a Parquet file"):
        io.open_recordings(tmp_path / "notes.txt")


def test_parquet_that_is_not_a_recording_is_one_clear_error(tmp_path):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(RunctraceError, match="not a runctrace recording: it has no column type, container_id, time"):
        io.open_recordings(tmp_path / "other.parquet")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(RunctraceError, match="no such file"):
        io.open_recordings(tmp_path / "nope")


def test_empty_directory_and_empty_file_give_no_events(tmp_path):
    (tmp_path / "empty").mkdir()
    rec = io.open_recordings(tmp_path / "empty")
    assert rec.events().empty and any("no .parquet files" in n for n in rec.notes)
    s.write_file([], tmp_path / "e.parquet")
    assert io.load_events(tmp_path / "e.parquet").empty


def test_extra_columns_on_request(tmp_path):
    path = s.write_file([s.add("a", 0, annotations=WEB)], tmp_path / "r.parquet")
    ev = io.load_events(path, columns=["config_json", "annotations", "caller"])
    assert json.loads(ev.config_json.iloc[0])["process"]["args"] == ["sleep", "60"]
    with pytest.raises(RunctraceError, match="no column 'colour'"):
        io.load_events(path, columns=["colour"])


def test_recorder_counters_are_per_session_not_per_file(tmp_path):
    # Each flush writes the counters so far: a session's total is its last value.
    d = tmp_path / "host=n1" / "date=2026-01-01"
    d.mkdir(parents=True)
    t = s.table([s.add("a", 0, host="n1")]).drop_columns(["host"])
    for seq, (pid, lost) in enumerate([(100, 1), (100, 3), (100, 3), (200, 2)], 1):  # two recorder runs
        meta = dict(t.schema.metadata or {})
        meta[b"runctrace.stats"] = json.dumps({"adds": seq, "removes": 0, "lost": lost, "missed": 0}).encode()
        meta[b"runctrace.host"] = b"n1"
        pq.write_table(t.replace_schema_metadata(meta), d / f"part-{seq}-{pid}-{seq:06d}.parquet")
    rec = io.open_recordings(tmp_path)
    assert rec.recorder_counters()["lost"] == 3 + 2
    assert rec.files.session.nunique() == 2
