"""A full disk is survived: rows wait (bounded), writes are retried with a growing
delay, and once space returns every row that waited is written exactly once.

On a real, small tmpfs, filled with a file and then freed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import runc
from runctrace.store import buffer
from runctrace.errors import RecordingError
from runctrace.events import ContainerEvent, EventType
from runctrace.store import DatasetRecorder, ParquetRecorder

from test_dataset import Recording, files, read

T0 = 1_795_000_000 * 10**9

pytestmark = pytest.mark.root  # mount


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m"):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """A file that takes every free byte of ``disk``."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (b"\0" * (1 << 20), b"\0" * 4096):
            try:
                while os.write(fd, chunk):
                    pass
            except OSError as err:
                assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def event(cid: str, i: int) -> ContainerEvent:
    return ContainerEvent(EventType.ADD, cid, 42, {"process": {"args": ["x"]}}, "/b", T0 + i, "fake")


def write(rec, prefix: str, n: int, start: int) -> list[str]:
    cids = [f"{prefix}{i}" for i in range(n)]
    for i, cid in enumerate(cids):
        rec.write(event(cid, start + i))
    return cids


def test_a_dataset_recorder_buffers_through_a_full_disk_and_writes_each_row_once(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        root = disk / "data"
        rec = DatasetRecorder(str(root), host="h")
        before = write(rec, "before", 5, 0)
        rec.flush()
        assert rec.write_error is None and rec.pending == 0  # in the journal

        filler = fill(disk)
        during = write(rec, "during", 10, 100)
        rec.flush()
        assert rec.write_error == f"cannot write to {root}: no space left on the device"
        assert rec.pending == 10
        # retried later, not at every event or wake-up
        assert buffer.RETRY_FIRST_S - 0.5 < rec.flush_due_in() <= buffer.RETRY_FIRST_S
        rec.flush()
        assert rec.flush_due_in() > buffer.RETRY_FIRST_S  # and later still after each failure
        rec.flush(files=True)  # the journal's Parquet file cannot be written either
        assert rec.write_error and not list(root.rglob("*.parquet")) and not list(root.rglob("*.tmp"))

        rec.max_backlog_rows = 13
        overflow = write(rec, "overflow", 5, 200)
        assert rec.pending == 13 and rec.dropped == 2  # the newest two: overflow3, overflow4

        filler.unlink()
        rec.flush()
        assert rec.write_error is None and rec.pending == 0 and rec.flush_due_in() > 1
        after = write(rec, "after", 3, 300)
        rec.close(stats={"lost": 0})

        expected = before + during + overflow[:3] + after
        assert read(root).sort_by("time_ns").column("container_id").to_pylist() == expected
        (part,) = files(root)
        assert json.loads(pq.read_metadata(part).metadata[b"runctrace.stats"]) == {"lost": 0, "dropped": 2}


def test_a_parquet_file_that_cannot_be_written_waits_in_the_journal(tmp_path):
    """The journal's appends still fit, its Parquet file does not: the rows stay
    journaled (and in memory) until it does, then are written once."""
    with small_disk(tmp_path / "disk") as disk:
        root = disk / "data"
        rec = DatasetRecorder(str(root), host="h", file_interval=3600)
        first = write(rec, "j", 4, 0)
        rec.flush()
        filler = fill(disk)
        os.truncate(filler, filler.stat().st_size - 8192)  # room for a small append, not a file
        second = write(rec, "k", 2, 10)
        rec.flush()
        assert rec.write_error is None and rec.pending == 0
        rec.flush(files=True)
        assert "no space left" in rec.write_error and len(rec._journaled) == 6
        filler.unlink()
        rec.flush(files=True)
        assert rec.write_error is None and not list(root.glob("host=h/.journal-*"))
        rec.close()
        assert read(root).column("container_id").to_pylist() == first + second


def test_closing_on_a_full_disk_says_what_is_lost_and_the_journal_keeps_the_rest(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        root = disk / "data"
        rec = DatasetRecorder(str(root), host="h")
        kept = write(rec, "kept", 3, 0)
        rec.flush()
        filler = fill(disk)
        write(rec, "lost", 8, 10)  # more than the journal's last, part-used page holds
        with pytest.raises(RecordingError) as info:
            rec.close()
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"cannot write to {root}: no space left on the device; 8 events are lost; "
                                  "3 wait in the journal .journal-")
        assert f"the next `runctrace record -o {root}` writes as Parquet" in message
        filler.unlink()
        again = DatasetRecorder(str(root), host="h")
        again.close()
        assert again.recovered == 3 and read(root).column("container_id").to_pylist() == kept


def test_a_single_file_buffers_through_a_full_disk(tmp_path):
    """Bytes pyarrow's writer gave the disk in vain wait in the spool, not in the writer."""
    with small_disk(tmp_path / "disk") as disk:
        target = disk / "x.parquet"
        rec = ParquetRecorder(str(target), host="h")
        before = write(rec, "before", 3, 0)
        rec.flush()
        filler = fill(disk)
        during = write(rec, "during", 3, 10)
        rec.flush()  # a row group made, its bytes refused
        assert "no space left" in rec.write_error and rec.pending == 0 and rec._spool.waiting
        assert 0 < rec.flush_due_in() <= buffer.RETRY_FIRST_S  # the waiting bytes are retried on their own
        more = write(rec, "more", 2, 20)
        rec.flush()  # no new row group while the last waits
        assert "no space left" in rec.write_error and rec.pending == 2
        filler.unlink()
        rec.flush()
        assert rec.write_error is None and rec.pending == 0 and not rec._spool.waiting
        assert not target.exists()  # only on close, complete
        rec.close()
        assert pq.read_table(target).column("container_id").to_pylist() == before + during + more


def test_a_single_file_that_cannot_be_finished_is_not_left_half_written(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        target = disk / "x.parquet"
        rec = ParquetRecorder(str(target), host="h")
        write(rec, "a", 3, 0)
        rec.flush()
        fill(disk)
        write(rec, "b", 2, 10)
        with pytest.raises(RecordingError, match=rf"^cannot finish {target}: no space left on the device; "
                                                 r"its 5 events are lost$"):
            rec.close()
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_other_write_errors_are_survived_too(tmp_path, monkeypatch):
    """EIO, EROFS...: the recorder keeps buffering and says why, it does not stop."""
    root = tmp_path / "data"
    rec = DatasetRecorder(str(root), host="h", file_interval=0)

    def broken(*args, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(DatasetRecorder, "_write_file", broken)
    first = write(rec, "a", 2, 0)
    rec.flush()
    assert rec.write_error == f"cannot write to {root}: Read-only file system" and rec.pending == 2
    monkeypatch.undo()
    rec.flush()
    assert rec.write_error is None
    rec.close()
    assert read(root).column("container_id").to_pylist() == first


def test_the_retry_delay_grows_then_resets(tmp_path, monkeypatch):
    rec = DatasetRecorder(str(tmp_path / "data"), host="h", file_interval=0)
    monkeypatch.setattr(DatasetRecorder, "_write_file", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    write(rec, "a", 1, 0)
    delays = []
    for _ in range(8):
        rec.flush()
        delays.append(round(rec._retry_delay))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert rec.rows_due_in() > 29  # the session's hold and wake-ups see the retry, not "now"
    monkeypatch.undo()
    rec.flush()
    assert rec.flush_due_in() is None and rec._retry_delay == 0
    rec.close()


# ----------------------------------------------------------------- the real recorder


def journal_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.glob("host=*/.journal-*.jsonl"))


def stderr_until(proc, needle: str, timeout: float) -> str:
    """What ``proc`` writes on stderr, read as it comes, until a line holds ``needle``."""
    import select

    fd, seen = proc.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no {needle!r} on stderr: {seen!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"stderr closed before {needle!r}: {seen!r}"
        seen += chunk
    return seen.decode(errors="replace")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# The real recorder sees every container on the host, other tests' too, whose rows
# may carry 16 MiB specs: once freed, the disk must have room for those.
HOST_DISK = "128m"


def test_record_keeps_recording_through_a_full_disk(tmp_path, bundles, container_ids):
    with small_disk(tmp_path / "disk", HOST_DISK) as disk:
        root = disk / "data"
        rec = Recording(root, "--flush-interval", "0.1", "-q")
        try:
            b = bundles.make(["true"])
            before = container_ids()
            runc("run", before, cwd=b)
            wait_for(lambda: before in journal_text(root), 10, "the first container in the journal")
            filler = fill(disk)
            during = [container_ids() for _ in range(3)]
            for cid in during:
                runc("run", cid, cwd=b)
            # without a terminal, the recorder says on stderr that writes fail
            told = stderr_until(rec.proc, "writes failing (cannot write to", 20)
            assert "no space left on the device" in told
            assert rec.proc.poll() is None, rec.proc.stderr.read()  # still recording
            # (the first rows may fit in the journal's last, part-used page: not all of them)
            assert [cid for cid in during if cid not in journal_text(root)]
            filler.unlink()
            wait_for(lambda: all(cid in journal_text(root) for cid in during), 40, "the buffered rows")
            stderr_until(rec.proc, "writes resumed", 20)
            after = container_ids()
            runc("run", after, cwd=b)
            wait_for(lambda: after in journal_text(root), 10, "the last container in the journal")
        finally:
            rec.proc.send_signal(signal.SIGTERM)
            code = rec.proc.wait(30)
        err = rec.proc.stderr.read()
        assert code == 0, err
        rows = [(r["container_id"], r["type"]) for r in read(root).to_pylist()]
        for cid in [before, *during, after]:
            assert sorted(t for c, t in rows if c == cid) == ["add", "remove"], (cid, rows)


def test_record_stopped_on_a_full_disk_says_what_is_lost_in_one_line(tmp_path, bundles, container_ids):
    with small_disk(tmp_path / "disk", HOST_DISK) as disk:
        root = disk / "data"
        rec = Recording(root, "--flush-interval", "0.1", "-q")
        b = bundles.make(["true"])
        first = container_ids()
        runc("run", first, cwd=b)
        wait_for(lambda: first in journal_text(root), 10, "the first container in the journal")
        filler = fill(disk)
        for _ in range(2):
            runc("run", container_ids(), cwd=b)
        rec.proc.send_signal(signal.SIGTERM)
        assert rec.proc.wait(30) == 1
        err = rec.proc.stderr.read()
        assert "Traceback" not in err and err.strip().count("\n") == 0, err
        # (other containers on the host count too: initial events, other tests')
        # (those that fit the journal's last, part-used page are not lost)
        assert re.search(r"no space left on the device; (\d+ events are lost; )?[1-9]\d* wait in the journal", err)
        filler.unlink()
        again = DatasetRecorder(str(root))
        again.close()
        assert again.recovered >= 2 and again.unrecovered == []
        rows = [(r["container_id"], r["type"]) for r in read(root).to_pylist()]
        assert sorted(t for c, t in rows if c == first) == ["add", "remove"]
