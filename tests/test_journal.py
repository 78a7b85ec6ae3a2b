"""A dataset recorder's journal: rows durable every flush, Parquet every file interval,
and a crashed recorder's rows recovered by the next one, exactly once."""

from __future__ import annotations

import errno
import fcntl
import stat
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from runctrace.events import ContainerEvent, EventType
from runctrace.store import DatasetRecorder, recovery_notes

T0 = 1_795_000_000 * 10**9


def event(cid: str, t_ns: int, kind=EventType.ADD, **kw) -> ContainerEvent:
    config = {
        "process": {"args": ["sh", "-c", "échο ✓"], "env": ["K=v"]},
        "annotations": {"io.kubernetes.pod.name": "web-0", "k": "ünïcode"},
    }
    return ContainerEvent(kind, cid, 42, config, "/b", t_ns, "fake", runtime_args=["runc", "run", cid], **kw)


def read(root: Path):
    return ds.dataset(root, format="parquet", partitioning="hive").to_table().sort_by("time_ns")


def journals(root: Path) -> list[Path]:
    return sorted(root.glob("host=*/.journal-*"))


def parquet(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def crash_after(root: Path, script: str) -> None:
    """Run ``script`` with ``rec``, a recorder on ``root``, in a process that then dies
    without closing anything (os._exit: no finally, no atexit), as a kill -9 would."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_journal import event, T0
        from runctrace.events import EventType
        from runctrace.store import DatasetRecorder
        rec = DatasetRecorder({str(root)!r}, host="h")
        rec.stats_source = lambda: {{"adds": 7, "lost": 0}}
        rec.backend = "fake"
    """) + textwrap.dedent(script) + "\nos._exit(0)\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def crashed_with_one_row(root: Path) -> Path:
    """The journal a recorder left after writing the add of "a" and dying."""
    crash_after(root, """
        rec.write(event("a", T0))
        rec.flush()
    """)
    (journal,) = journals(root)
    return journal


def test_rows_wait_in_the_journal_then_become_one_file(tmp_path):
    root = tmp_path / "d"
    rec = DatasetRecorder(str(root), host="h", flush_interval=0.05, file_interval=0.3)
    for i in range(3):
        rec.write(event(f"c{i}", T0 + i))
        rec.flush()
    assert parquet(root) == [] and len(journals(root)) == 1
    assert 0 < rec.flush_due_in() <= 0.3  # nothing pending, but the file is due
    time.sleep(rec.flush_due_in())
    rec.flush()
    (only,) = parquet(root)
    assert journals(root) == []
    assert read(root).column("container_id").to_pylist() == ["c0", "c1", "c2"]
    rec.write(event("c3", T0 + 3))
    rec.close()
    assert len(parquet(root)) == 2 and journals(root) == []
    assert only.name.split("-")[2:] == [str(os.getpid()), "000001.parquet"]


def test_a_crashed_recorders_rows_are_recovered_unchanged(tmp_path):
    reference, root = tmp_path / "ref", tmp_path / "d"
    events = [event("a", T0), event("a", T0 + 5, EventType.REMOVE, exit_code=3, started_ns=T0),
              event("b", T0 + 86400 * 10**9)]  # the next day: a second partition
    rec = DatasetRecorder(str(reference), host="h", file_interval=0)
    for e in events:
        rec.write(e)
    rec.close()

    crash_after(root, """
        rec.write(event("a", T0))
        rec.write(event("a", T0 + 5, EventType.REMOVE, exit_code=3, started_ns=T0))
        rec.flush()
        rec.write(event("b", T0 + 86400 * 10**9))
        rec.flush()
    """)
    assert parquet(root) == [] and len(journals(root)) == 1
    rec = DatasetRecorder(str(root), host="h")
    assert rec.recovered == 3 and rec.unrecovered == []
    assert recovery_notes(rec) == ["recovered 3 events from the journal of a recorder that did not stop cleanly"]
    rec.close()
    assert journals(root) == []
    assert read(root).equals(read(reference))
    # the files say whose they were: the dead recorder's pid and counters
    for path in parquet(root):
        meta = ds.dataset(path).schema.metadata
        assert meta[b"runctrace.stats"] == b'{"adds": 7, "lost": 0, "dropped": 0}'
        assert meta[b"runctrace.backend"] == b"fake"
        assert path.name.split("-")[2] != str(os.getpid())


def test_a_live_recorders_journal_is_left_alone(tmp_path):
    root = tmp_path / "d"
    live = DatasetRecorder(str(root), host="h")
    live.write(event("a", T0))
    live.flush()
    # and journals that never got their name (filesystems without O_TMPFILE): one
    # a crash left long ago, and one a recorder is creating this moment
    stale, young = (root / "host=h" / f".journal-1-00000{i}-ab.jsonl.new" for i in (1, 2))
    stale.write_bytes(b"")
    os.utime(stale, (time.time() - 3600,) * 2)
    young.write_bytes(b"")
    other = DatasetRecorder(str(root), host="h")  # its own lock: the same process is no exception
    assert other.recovered == 0
    assert [p.name for p in journals(root)] == [young.name, live._journal.name]
    other.close()
    live.close()
    assert read(root).column("container_id").to_pylist() == ["a"]


def test_a_crash_between_the_file_and_the_journals_removal_writes_nothing_twice(tmp_path):
    root = tmp_path / "d"
    crash_after(root, """
        rec.write(event("a", T0))
        rec.write(event("b", T0 + 1))
        rec.flush()
        rec._write_parts(rec._journaled, os.getpid(), rec._segment, rec._metadata())
    """)
    assert len(parquet(root)) == 1 and len(journals(root)) == 1
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert journals(root) == [] and len(parquet(root)) == 1
    assert read(root).column("container_id").to_pylist() == ["a", "b"]


def test_a_torn_last_line_is_skipped_and_the_journal_removed(tmp_path):
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    with open(journal, "ab") as f:
        f.write(b'{"time_ns": 1, "type": "add", "contai')  # a write cut short by a power loss
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert rec.recovered == 1
    assert rec.unrecovered == [f"journal {journal.name}: 1 event(s) recovered, its last line, cut short, skipped"]
    assert read(root).column("container_id").to_pylist() == ["a"]
    assert not list(root.glob("host=h/.journal-*"))


def test_garbled_lines_are_skipped_counted_and_the_journal_kept(tmp_path):
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    with open(journal, "ab") as f:
        f.write(b'not json\n[1, 2]\n{"time_ns": 1, "type": "add", "contai')  # and a torn last line
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert rec.recovered == 1
    kept = journal.with_name(journal.name + ".recovered")
    assert rec.unrecovered == [f"journal {journal.name}: 1 event(s) recovered, 3 unreadable line(s) skipped; "
                               f"kept as {kept.name}"]
    assert read(root).column("container_id").to_pylist() == ["a"]
    assert journals(root) == [kept]  # nothing it could not read is deleted
    assert DatasetRecorder(str(root), host="h").recovered == 0  # and nothing is recovered twice


def test_a_journal_gets_its_name_only_once_locked(tmp_path):
    """Nameless (O_TMPFILE) until locked, then linked in: no other recorder can find
    it unlocked, and a name in use (same pid, another pid namespace) is not taken."""
    root = tmp_path / "d"
    rec = DatasetRecorder(str(root), host="h")
    taken = root / "host=h" / f".journal-{os.getpid()}-000001.jsonl"
    taken.write_bytes(b"someone else's\n")
    rec.write(event("a", T0))
    rec.flush()
    assert taken.read_bytes() == b"someone else's\n"
    assert [p.name for p in journals(root)] == [taken.name, f".journal-{os.getpid()}-1000001.jsonl"]
    taken.unlink()
    rec.close()
    assert read(root).column("container_id").to_pylist() == ["a"]


def test_a_journal_that_is_no_table_is_kept_aside_and_named(tmp_path, monkeypatch):
    """Rows that pass the line checks but that pyarrow still refuses (a schema of a
    future version): the journal is set aside whole."""
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)

    def refuse(rows, schema=None):
        raise pa.ArrowInvalid("no such column type")

    monkeypatch.setattr("runctrace.store.parquet.rows_to_table", refuse)
    monkeypatch.setattr("runctrace.store.parquet.warm_up", lambda: None)
    rec = DatasetRecorder(str(root), host="h")  # starts anyway
    monkeypatch.undo()
    rec.write(event("b", T0 + 1))
    rec.close()
    assert rec.recovered == 0 and len(rec.unrecovered) == 1
    assert rec.unrecovered[0].startswith(f"journal {journal.name} set aside as {journal.name}.bad: ArrowInvalid")
    assert journals(root) == [journal.with_name(journal.name + ".bad")]
    assert read(root).column("container_id").to_pylist() == ["b"]
    from runctrace.analysis import io

    assert any(".jsonl.bad" in n for n in io.open_recordings(root).notes)  # readers say so too


def test_a_write_cut_short_by_a_full_disk_leaves_no_partial_line(tmp_path, monkeypatch):
    root = tmp_path / "d"
    rec = DatasetRecorder(str(root), host="h")
    rec.write(event("a", T0))
    rec.flush()
    (journal,) = journals(root)
    size = journal.stat().st_size
    real_write, calls = os.write, []

    def write_half_then_fail(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write_half_then_fail)
    rec.write(event("b", T0 + 1))
    rec.flush()
    assert "no space left" in rec.write_error and rec.pending == 1
    assert journal.stat().st_size == size  # the half line is gone
    monkeypatch.setattr(os, "write", real_write)
    rec.flush()  # the retry writes b once
    assert rec.write_error is None and rec.pending == 0
    rec.close()
    assert read(root).column("container_id").to_pylist() == ["a", "b"]


def test_readers_name_the_journals_they_leave_out(tmp_path):
    from runctrace.analysis import io

    root = tmp_path / "d"
    live = DatasetRecorder(str(root), host="h", file_interval=0)
    live.write(event("a", T0))
    live.flush()  # one Parquet file
    live.file_interval = 60.0
    live.write(event("b", T0 + 1))
    live.flush()  # and one row in a journal
    rec = io.open_recordings(root)
    assert rec.events().container_id.tolist() == ["a"]
    (note,) = [n for n in rec.notes if "journal" in n]
    assert "1 recorder journal(s)" in note and ".journal-" in note
    live.close()
    rec = io.open_recordings(root)
    assert rec.events().container_id.tolist() == ["a", "b"] and not [n for n in rec.notes if "journal" in n]


@pytest.mark.parametrize("broken", ["no /proc", "no hard links"])
def test_a_journal_is_named_without_proc_or_hard_links(tmp_path, monkeypatch, broken):
    """O_TMPFILE needs a link through /proc; without /proc, or on a filesystem with
    no hard links, the journal is a locked .new file linked (or renamed) in."""
    real_link = os.link

    def link(src, dst, **kw):
        if broken == "no hard links" or str(src).startswith("/proc/"):
            raise OSError(errno.ENOENT if broken == "no /proc" else errno.EPERM, "refused")
        return real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", link)
    root = tmp_path / "d"
    rec = DatasetRecorder(str(root), host="h")
    rec.write(event("a", T0))
    rec.flush()
    assert [p.name for p in journals(root)] == [f".journal-{os.getpid()}-000001.jsonl"]
    assert not list(root.glob("host=h/*.new"))
    rec.close()
    assert read(root).column("container_id").to_pylist() == ["a"]


def test_a_journal_whose_directory_cannot_be_synced_leaves_no_name(tmp_path, monkeypatch):
    """Its fd is closed on the error, which drops the lock: a name left behind would
    be taken for a crashed recorder's journal."""
    root = tmp_path / "d"
    rec = DatasetRecorder(str(root), host="h")
    rec.write(event("a", T0))
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rec.flush()
    assert "Input/output error" in rec.write_error
    assert journals(root) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    rec.close()  # the rows were kept for the retry
    assert read(root).column("container_id").to_pylist() == ["a"]


def test_a_journal_set_aside_while_we_waited_for_its_lock_is_left_alone(tmp_path, monkeypatch):
    """Two recorders starting together: the first to lock a bad journal renames it
    .bad; the other, which opened it before, must then skip it, not fail."""
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    real_flock = fcntl.flock

    def flock(fd, op):
        if op & fcntl.LOCK_NB and journal.exists():
            journal.rename(journal.with_name(journal.name + ".bad"))  # the other recorder, meanwhile
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    rec = DatasetRecorder(str(root), host="h")
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert rec.recovered == 0 and rec.unrecovered == []
    rec.close()
    assert journals(root) == [journal.with_name(journal.name + ".bad")]


def test_a_full_disk_while_naming_the_journal_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    """Only "link cannot work here" (no /proc, no hard links) falls back to another
    way of naming the journal; ENOSPC is reported, and the rows are kept."""
    root = tmp_path / "d"
    rec = DatasetRecorder(str(root), host="h")
    rec.write(event("a", T0))
    real_link = os.link

    def full(src, dst, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    rec.flush()
    assert "no space left" in rec.write_error
    assert journals(root) == [] and not list(root.glob("host=h/*.new"))
    monkeypatch.setattr(os, "link", real_link)
    rec.close()
    assert read(root).column("container_id").to_pylist() == ["a"]
