"""``runctrace report`` on a dataset directory where others could write: FIFOs, sockets,
links and odd names among the recordings must not hang, crash or be read.

Whatever could block runs in a subprocess (or a thread) with a timeout, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from runctrace.analysis import io
from runctrace.analysis import sample as s
from runctrace.errors import RunctraceError

TIMEOUT_S = 60  # far above a report of a few rows (a second or two), far below a hang


def report(*args) -> subprocess.CompletedProcess:
    """``runctrace report`` in its own process: a hang is a TimeoutExpired, not a stuck suite."""
    return subprocess.run([sys.executable, "-m", "runctrace", "report", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture
def dataset(tmp_path):
    """A dataset of one host and day: two events of one container."""
    s.write_dataset([s.add("a", 0), s.remove("a", 5, exit_code=0, started=0)], tmp_path / "data")
    return tmp_path / "data"


def day_dir(dataset):
    return next(dataset.glob("host=*/date=*"))


def events_in(res) -> int:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["dataset"]["events"]


def test_a_fifo_named_parquet_is_skipped_with_a_note(dataset):
    fifo = day_dir(dataset) / "part-9-1-000009.parquet"
    os.mkfifo(fifo)
    res = report(dataset)
    assert res.returncode == 0, res.stderr
    assert "Summary" in res.stdout
    assert "a FIFO, not a regular file" in " ".join(res.stdout.split())  # however the table wraps it
    res = report(dataset, "--format", "json")
    assert events_in(res) == 2 and f"runctrace: note: skipped {fifo}: a FIFO, not a regular file\n" in res.stderr


def test_a_fifo_named_on_the_command_line_is_skipped_too(tmp_path):
    os.mkfifo(tmp_path / "x.parquet")
    res = report(tmp_path / "x.parquet")
    assert res.returncode == 0, res.stderr
    assert "x.parquet: a FIFO, not a regular file" in res.stderr and "no events in" in res.stdout


def test_a_socket_named_parquet_is_skipped(dataset, monkeypatch):
    monkeypatch.chdir(day_dir(dataset))  # a socket's path is short: bind by a relative one
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("part-9-1-000009.parquet")
        res = report(dataset, "--format", "json")
    assert events_in(res) == 2 and "part-9-1-000009.parquet: a socket, not a regular file" in res.stderr


def test_links_inside_a_directory_are_not_followed(dataset, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.mkfifo(elsewhere / "fifo")
    s.write_file([s.add("b", 1)], elsewhere / "other.parquet")
    day = day_dir(dataset)
    (day / "part-8-1-000008.parquet").symlink_to(elsewhere / "fifo")
    (day / "part-9-1-000009.parquet").symlink_to(elsewhere / "other.parquet")
    (dataset / "host=linked").symlink_to(elsewhere, target_is_directory=True)
    res = report(dataset, "--format", "json")
    assert events_in(res) == 2  # nothing of "b" counted
    assert f"skipped {dataset / 'host=linked'}: a symbolic link to a directory, not a regular file; " \
           "and 2 more such entries" in res.stderr


def test_a_link_named_on_the_command_line_is_followed_to_a_regular_file(tmp_path):
    s.write_file([s.add("b", 1)], tmp_path / "real.parquet")
    (tmp_path / "latest.parquet").symlink_to(tmp_path / "real.parquet")
    assert events_in(report(tmp_path / "latest.parquet", "--format", "json")) == 1
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "pipe.parquet").symlink_to(tmp_path / "fifo")
    res = report(tmp_path / "pipe.parquet")
    assert res.returncode == 0 and "pipe.parquet: a FIFO, not a regular file" in res.stderr


def test_a_directory_named_parquet_is_searched(dataset):
    # Spark writes a dataset as a directory named x.parquet: its files are recordings.
    inner = day_dir(dataset) / "more.parquet"
    inner.mkdir()
    s.write_file([s.add("b", 1, host="node1")], inner / "part-0.parquet")
    assert len(io.load_events(dataset)) == 3


def test_a_file_name_that_is_not_utf8_is_read(dataset):
    day = day_dir(dataset)
    odd = os.path.join(os.fsencode(day), b"part-\xff\x1b[2J-1-000009.parquet")
    s.write_file([s.add("b", 1, host="node1")], day / "b.parquet")
    os.rename(day / "b.parquet", odd)  # (pyarrow itself cannot write to such a name)
    rec = io.open_recordings(dataset)
    assert sorted(rec.events().container_id) == ["a", "a", "b"]
    assert os.fsdecode(odd) in rec.files.path.tolist()


def test_an_unlistable_directory_is_a_note(dataset, monkeypatch):
    locked = dataset / "host=locked"
    locked.mkdir()

    def refusing(listing):  # what a directory of mode 0 does to anyone but root
        def refuse(path):
            if os.fspath(path) == os.fspath(locked):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return listing(path)
        return refuse

    monkeypatch.setattr(os, "scandir", refusing(os.scandir))
    monkeypatch.setattr(os, "listdir", refusing(os.listdir))
    rec = io.open_recordings(dataset)
    assert len(rec.events()) == 2
    assert f"could not list {locked}: Permission denied; files in it are left out" in rec.notes


def test_a_file_replaced_by_a_fifo_after_its_footer_was_read_is_an_error_not_a_hang(dataset):
    rec = io.open_recordings(dataset)
    path = next(day_dir(dataset).glob("*.parquet"))
    os.unlink(path)
    os.mkfifo(path)
    outcome = []

    def read():
        try:
            outcome.append(rec.events())
        except Exception as err:  # noqa: BLE001 (the test looks at it below)
            outcome.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(TIMEOUT_S)
    assert not reader.is_alive(), "reading blocked on the FIFO"
    assert isinstance(outcome[0], RunctraceError), outcome
    assert "a FIFO, not a regular file" in str(outcome[0])


@pytest.mark.root
def test_a_file_of_another_owner_cannot_hide_recordings_by_listing_them_as_merged(dataset):
    day = day_dir(dataset)
    listed = [p.name for p in day.glob("*.parquet")]
    t = pq.read_table(next(day.glob("*.parquet"))).slice(0, 0)  # no events of its own
    meta = dict(t.schema.metadata or {})
    meta[b"runctrace.compacted_from"] = json.dumps(listed).encode()
    planted = day / "compact-1-1-000001.parquet"
    pq.write_table(t.replace_schema_metadata(meta), planted)
    assert len(io.load_events(dataset)) == 0  # same owner: taken as merged (a compaction a crash cut short)
    os.chown(planted, 4242, 4242)
    rec = io.open_recordings(dataset)
    assert len(rec.events()) == 2
    assert any(n.startswith("read 1 file(s) all the same that a file of another owner lists") for n in rec.notes)
