"""The crash-safe dataset directory: layout, permissions, crashes, readers.

A full disk: test_recording_full_disk.py."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import runc
from runctrace.errors import RecordingError
from runctrace.events import ContainerEvent, EventType
from runctrace.store import DatasetRecorder
from runctrace.store.schema import DATASET_SCHEMA, SCHEMA

RUNCTRACE = [sys.executable, "-m", "runctrace"]
DAY = 86400 * 10**9


def event(cid: str, t_ns: int, kind=EventType.ADD, **kw) -> ContainerEvent:
    return ContainerEvent(kind, cid, 42, {"process": {"args": ["x"], "env": ["K=v"]}}, "/b", t_ns, "fake", **kw)


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def read(root: Path):
    return ds.dataset(root, format="parquet", partitioning="hive").to_table()


def test_layout_permissions_and_schema(tmp_path):
    root = tmp_path / "data"
    rec = DatasetRecorder(str(root), host="node1")
    t0 = 1_795_000_000 * 10**9
    rec.write(event("a", t0))
    rec.write(event("b", t0 + DAY))  # the next day: another partition
    rec.close(stats={"lost": 0})
    written = files(root)
    assert [p.relative_to(root).parts[:2] for p in written] == [
        ("host=node1", "date=2026-11-18"), ("host=node1", "date=2026-11-19")]
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert pq.read_schema(p).equals(DATASET_SCHEMA, check_metadata=False)
        assert b'"lost": 0' in pq.read_metadata(p).metadata[b"runctrace.stats"]
    for d in (root / "host=node1", root / "host=node1" / "date=2026-11-18"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    table = read(root)
    assert sorted(table.column("container_id").to_pylist()) == ["a", "b"]
    assert set(table.column("host").to_pylist()) == {"node1"}
    assert set(SCHEMA.names) <= set(table.column_names)


def test_env_is_redacted_in_files(tmp_path):
    rec = DatasetRecorder(str(tmp_path / "d"), host="h")
    rec.write(event("a", 1_795_000_000 * 10**9))
    rec.close()
    (config,) = read(tmp_path / "d").column("config_json").to_pylist()
    assert '"K=<redacted>"' in config


def test_restart_continues_and_compaction(tmp_path):
    root = tmp_path / "data"
    t0 = 1_795_000_000 * 10**9
    for session in range(3):
        rec = DatasetRecorder(str(root), host="h")
        for i in range(4):
            rec.write(event(f"s{session}-{i}", t0 + session * 10**9 + i))
            rec.flush()
        rec.close()
    assert len(files(root)) == 3  # each session's journal became one file on close
    rec = DatasetRecorder(str(root), host="h")
    assert rec.compact() == 3
    rec.close()
    (only,) = files(root)
    assert only.name.startswith("compact-")
    ids = read(root).column("container_id").to_pylist()
    assert ids == [f"s{s}-{i}" for s in range(3) for i in range(4)]


def test_interrupted_compaction_and_temp_files_are_cleaned(tmp_path):
    root = tmp_path / "data"
    t0 = 1_795_000_000 * 10**9
    rec = DatasetRecorder(str(root), host="h", file_interval=0)  # no journal: a file per flush
    for i in range(3):
        rec.write(event(f"c{i}", t0 + i))
        rec.flush()
    rec.close()
    part_dir = files(root)[0].parent
    sources = sorted(p.name for p in part_dir.iterdir())
    # a crash after the compacted file was renamed in, before its sources went
    rec = DatasetRecorder(str(root), host="h")
    rec.compact()
    rec.close()
    compacted = files(root)[0]
    for name in sources:
        (part_dir / name).write_bytes(b"")  # stand-ins for sources not yet deleted
    (part_dir / ".part-1-2-000001.parquet.tmp").write_bytes(b"half a file")
    DatasetRecorder(str(root), host="h").close()
    assert files(root) == [compacted]


def test_symlinked_output_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(RecordingError, match="symlink"):
        DatasetRecorder(str(tmp_path / "link"), host="h")
    assert list(target.iterdir()) == []


def test_unwritable_directory(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        DatasetRecorder(str(tmp_path / "no" / "such"), host="h")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="not a directory"):
        DatasetRecorder(str(tmp_path / "file"), host="h")


def test_duckdb_reads_the_dataset(tmp_path):
    import duckdb

    root = tmp_path / "data"
    t0 = 1_795_000_000 * 10**9
    for host in ("n1", "n2"):
        rec = DatasetRecorder(str(root), host=host)
        rec.write(event(f"{host}-a", t0))
        rec.write(event(f"{host}-a", t0 + 5 * 10**9, EventType.REMOVE, exit_code=3, started_ns=t0))
        rec.close()
    rows = duckdb.connect().execute(
        f"SELECT host, container_id, type, exit_code, lifetime_ns FROM read_parquet('{root}/**/*.parquet', "
        "hive_partitioning = true) ORDER BY host, time_ns"
    ).fetchall()
    assert rows == [
        ("n1", "n1-a", "add", None, None), ("n1", "n1-a", "remove", 3, 5 * 10**9),
        ("n2", "n2-a", "add", None, None), ("n2", "n2-a", "remove", 3, 5 * 10**9),
    ]


# ------------------------------------------------------------- real recorder, real kill


class Recording:
    def __init__(self, root: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*RUNCTRACE, "record", "--backend", "fanotify", "-o", str(root), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.first_line = line = self.proc.stderr.readline()
        while line and "recording to" not in line:  # notes first (a recovered journal)
            line = self.proc.stderr.readline()
        assert "recording to" in line, self.first_line + line + self.proc.stderr.read()


@pytest.mark.root
def test_sigkill_mid_burst_loses_at_most_the_last_flush(tmp_path, bundles, container_ids):
    root = tmp_path / "data"
    rec = Recording(root, "--flush-interval", "0.5", "-q")
    b = bundles.make(["true"])
    finished: list[tuple[str, float]] = []
    start = time.monotonic()
    while time.monotonic() - start < 3.0:  # a burst of about 3 s, then the kill
        cid = container_ids()
        runc("run", cid, cwd=b)
        finished.append((cid, time.monotonic()))
    killed_at = time.monotonic()
    rec.proc.send_signal(signal.SIGKILL)
    rec.proc.wait(10)
    # The rows since the last Parquet file wait in the dead recorder's journal
    # (.journal-*.jsonl, skipped by every reader); the next recorder here writes
    # them as Parquet before it starts, and says so.
    assert list(root.glob("host=*/.journal-*.jsonl"))
    rec2 = Recording(root)
    assert "recovered" in rec2.first_line, rec2.first_line
    table = read(root)
    seen = set(table.filter(ds.field("type") == "remove").column("container_id").to_pylist())
    # everything that ended more than one flush interval (plus scheduling slack) before the kill
    must_have = [cid for cid, t in finished if killed_at - t > 0.5 + 0.3]
    assert must_have, "the burst was too short to test anything"
    assert [cid for cid in must_have if cid not in seen] == []
    assert len(seen) == len(table.filter(ds.field("type") == "remove"))  # and nothing twice
    assert not list(root.glob("host=*/.journal-*.jsonl"))

    # the dataset continues
    cid = container_ids()
    runc("run", cid, cwd=b)
    time.sleep(1.0)
    rec2.proc.send_signal(signal.SIGTERM)
    assert rec2.proc.wait(30) == 0
    table = read(root)
    assert cid in table.column("container_id").to_pylist()
    assert not [p for p in files(root) if p.name.endswith(".tmp")]  # cleaned at restart
