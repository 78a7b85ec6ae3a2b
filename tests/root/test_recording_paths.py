"""Where the recorder writes: paths other users can touch are hostile.

Files it writes are its own (created O_EXCL under an unpredictable name, 0600,
renamed into place); directories another user owns or can write, or symlinks they
own on the way, are refused unless --allow-untrusted-dir."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runctrace.errors import RecordingError
from runctrace.events import ContainerEvent, EventType
from runctrace.store import DatasetRecorder, ParquetRecorder, open_recorder

RUNCTRACE = [sys.executable, "-m", "runctrace"]
T0 = 1_795_000_000 * 10**9
NOBODY = 65534

pytestmark = pytest.mark.root  # chown, and files owned by another user


def event(cid: str, t_ns: int = T0) -> ContainerEvent:
    return ContainerEvent(EventType.ADD, cid, 42, {"process": {"args": ["x"]}}, "/b", t_ns, "fake")


def one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    return res.stderr


# ------------------------------------------------------------------ -o FILE.parquet


def test_a_fifo_at_the_output_path_is_refused_at_once(tmp_path):
    """open(O_WRONLY) of a FIFO waits for a reader forever: the recorder must never open it."""
    fifo = tmp_path / "x.parquet"
    os.mkfifo(fifo)
    start = time.monotonic()
    res = subprocess.run([*RUNCTRACE, "record", "--backend", "fanotify", "-o", str(fifo), "-d", "5"],
                         capture_output=True, text=True, timeout=60)
    err = one_line_error(res)
    assert "it exists and is a FIFO" in err and time.monotonic() - start < 30
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


@pytest.mark.parametrize("kind", ["directory", "socket", "symlink"])
def test_an_output_path_that_is_no_regular_file_is_refused(tmp_path, kind):
    target = tmp_path / "x.parquet"
    if kind == "directory":
        target.mkdir()
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(target))
        s.close()
    else:
        (tmp_path / "elsewhere").write_bytes(b"")
        target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RecordingError, match=f"it exists and is a {kind}"):
        ParquetRecorder(str(target), host="h")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    if kind == "symlink":
        assert (tmp_path / "elsewhere").read_bytes() == b""


def test_a_file_another_user_made_is_replaced_never_written_into(tmp_path):
    """Another user's 0666 file at the path: written into, it would stay theirs to
    read (and to truncate while the recorder writes). It is replaced, whole, on close."""
    target = tmp_path / "x.parquet"
    target.write_bytes(b"theirs")
    os.chown(target, NOBODY, NOBODY)
    os.chmod(target, 0o666)
    theirs = os.open(target, os.O_RDONLY)  # what the other user keeps open
    try:
        rec = ParquetRecorder(str(target), host="h")
        rec.write(event("a"))
        rec.flush()
        assert target.read_bytes() == b"theirs"  # nothing written there while recording...
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert tmp.name.startswith(".x.parquet.") and stat.S_IMODE(tmp.stat().st_mode) == 0o600
        rec.close()
        assert os.pread(theirs, 100, 0) == b"theirs"  # ...nor into their file, ever
    finally:
        os.close(theirs)
    st = target.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert pq.read_table(target).column("container_id").to_pylist() == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_the_file_appears_complete_on_close_under_an_unpredictable_temporary_name(tmp_path):
    target = tmp_path / "x.parquet"
    recs = [ParquetRecorder(str(target), host="h") for _ in range(2)]
    temps = {p.name for p in tmp_path.iterdir()}
    assert not target.exists() and len(temps) == 2  # two names, neither guessable from the other
    for rec in recs:
        rec.close()
    assert pq.read_table(target).num_rows == 0 and [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


# -------------------------------------------------------------------- directories


def refused(path: Path, layout: str, match: str) -> None:
    output = str(path / "x.parquet") if layout == "file" else str(path / "data")
    with pytest.raises(RecordingError, match=match) as info:
        open_recorder(output, host="h")
    assert "--allow-untrusted-dir" in str(info.value) and "\n" not in str(info.value)
    open_recorder(output, host="h", allow_untrusted_dir=True).close()  # the operator's choice


@pytest.mark.parametrize("layout", ["dataset", "file"])
def test_a_directory_another_user_owns_is_refused(tmp_path, layout):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    refused(theirs, layout, f"{theirs} is owned by uid {NOBODY}")


@pytest.mark.parametrize("layout", ["dataset", "file"])
@pytest.mark.parametrize("mode", [0o775, 0o777, 0o757])
def test_a_directory_group_or_others_can_write_is_refused(tmp_path, layout, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    refused(shared, layout, f"{shared} is writable by group or others")


def test_a_dataset_directory_another_user_owns_is_refused(tmp_path):
    """The case issue 18 found: accepted, it let that user plant journals and files."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chown(data, NOBODY, NOBODY)
    with pytest.raises(RecordingError, match=f"{data} is owned by uid {NOBODY}"):
        DatasetRecorder(str(data), host="h")
    assert list(data.iterdir()) == []


def test_a_parent_another_user_owns_is_refused(tmp_path):
    parent = tmp_path / "parent"
    (parent / "mine").mkdir(parents=True)
    os.chown(parent, NOBODY, NOBODY)  # they can rename "mine" away and put their own in its place
    with pytest.raises(RecordingError, match=f"{parent} is owned by uid {NOBODY}"):
        DatasetRecorder(str(parent / "mine" / "data"), host="h")


def test_a_host_directory_others_can_write_is_refused(tmp_path):
    (tmp_path / "data" / "host=h").mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "data" / "host=h", 0o777)
    with pytest.raises(RecordingError, match="host=h is writable by group or others"):
        DatasetRecorder(str(tmp_path / "data"), host="h")


def test_a_sticky_parent_is_fine_above_a_directory_of_the_recorders_own(tmp_path):
    """Like /tmp: others can write it, but not rename or remove what they do not own."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    rec = DatasetRecorder(str(sticky / "data"), host="h")  # created by the recorder, 0700
    rec.write(event("a"))
    rec.close()
    assert stat.S_IMODE((sticky / "data").stat().st_mode) == 0o700
    # but not a directory below it that others can write, nor one another user owns
    os.chmod(sticky / "data", 0o777)
    with pytest.raises(RecordingError, match="data is writable by group or others"):
        DatasetRecorder(str(sticky / "data"), host="h")
    os.chmod(sticky / "data", 0o700)
    os.chown(sticky / "data", NOBODY, NOBODY)
    with pytest.raises(RecordingError, match=f"data is owned by uid {NOBODY}"):
        DatasetRecorder(str(sticky / "data"), host="h")
    # a sticky directory is no place for a file of its own either: others name its entries
    with pytest.raises(RecordingError, match="sticky is writable by group or others"):
        ParquetRecorder(str(sticky / "x.parquet"), host="h")


def test_below_a_sticky_directory_a_writable_one_is_refused_even_with_a_sticky_bit(tmp_path):
    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    os.chmod(outer, 0o1777)
    os.chmod(outer / "inner", 0o1777)
    with pytest.raises(RecordingError, match=r"inner is writable by group or others \(mode 1777\) inside"):
        DatasetRecorder(str(outer / "inner" / "data"), host="h")


def test_a_symlink_on_the_way_is_judged_by_its_owner_and_its_target(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    link = tmp_path / "link"
    link.symlink_to(mine)
    rec = DatasetRecorder(str(link / "data"), host="h")  # root's link to a fine directory
    rec.close()
    assert (mine / "data" / "host=h").is_dir()
    # a link another user owns: they can point it anywhere, whenever they like
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(RecordingError, match=f"the symlink {link} is owned by uid {NOBODY}"):
        DatasetRecorder(str(link / "data"), host="h")
    with pytest.raises(RecordingError, match=f"the symlink {link} is owned by uid {NOBODY}"):
        ParquetRecorder(str(link / "x.parquet"), host="h")
    # root's link into a directory others can write: judged where it leads
    os.lchown(link, 0, 0)
    os.chmod(mine, 0o777)
    with pytest.raises(RecordingError, match=f"{mine} is writable by group or others"):
        DatasetRecorder(str(link / "data"), host="h")


def test_a_symlink_inside_a_symlinks_target_is_judged_too(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "inner").symlink_to(real)
    os.lchown(tmp_path / "inner", NOBODY, NOBODY)
    (tmp_path / "outer").symlink_to("inner/.")
    with pytest.raises(RecordingError, match=f"the symlink {tmp_path / 'inner'} is owned by uid {NOBODY}"):
        DatasetRecorder(str(tmp_path / "outer" / "data"), host="h")


def test_the_cli_refuses_an_untrusted_directory_unless_told(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    args = [*RUNCTRACE, "record", "--backend", "fanotify", "-o", str(shared / "data"), "-d", "0.2"]
    err = one_line_error(subprocess.run(args, capture_output=True, text=True, timeout=60))
    assert f"refusing to record to {shared / 'data'}: {shared} is writable by group or others" in err
    assert not (shared / "data").exists()
    res = subprocess.run([*args, "--allow-untrusted-dir"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (shared / "data").is_dir()


# ------------------------------------------------------------- files read back


def test_compaction_reads_only_regular_parquet_files(tmp_path, monkeypatch):
    root = tmp_path / "data"
    rec = DatasetRecorder(str(root), host="h", file_interval=0)
    for i in range(2):
        rec.write(event(f"c{i}", T0 + i))
        rec.flush()
    (part,) = {p.parent for p in root.rglob("*.parquet")}
    os.mkfifo(part / "part-0-fifo.parquet")  # would block compaction's open forever
    (part / "part-1-elsewhere.parquet").symlink_to(next(part.glob("*.parquet")))
    cap = 10 * max(p.stat().st_size for p in part.glob("*.parquet"))  # room for the compacted file
    monkeypatch.setattr("runctrace.store.compaction.MAX_PARQUET", cap)
    big = part / "part-2-big.parquet"
    big.write_bytes(b"x" * (cap + 1))
    (part / "part-3-garbage.parquet").write_bytes(b"not parquet")
    (part.parent / "date=not-a-directory").write_bytes(b"")
    assert rec.compact() == 2
    rec.close()
    names = sorted(p.name for p in part.iterdir())
    assert names[0].startswith("compact-") and names[1:] == ["part-0-fifo.parquet", "part-1-elsewhere.parquet", big.name,
                                                   "part-3-garbage.parquet"]
    assert sorted(pq.read_table(part / names[0]).column("container_id").to_pylist()) == ["c0", "c1"]


def test_a_compacted_file_that_cannot_be_read_does_not_stop_the_start(tmp_path):
    root = tmp_path / "data"
    DatasetRecorder(str(root), host="h").close()
    date = root / "host=h" / "date=2026-11-18"
    date.mkdir(mode=0o700)
    (date / "compact-1-2-000001.parquet").write_bytes(b"not parquet")
    os.mkfifo(date / "compact-3-4-000001.parquet")
    (date / ".half-written.tmp").mkdir()  # not a file: left alone, not a failure
    (root / "host=h" / "date=not-a-directory").write_bytes(b"")
    DatasetRecorder(str(root), host="h").close()
    assert sorted(p.name for p in date.iterdir()) == [
        ".half-written.tmp", "compact-1-2-000001.parquet", "compact-3-4-000001.parquet"]
