"""Write events to Parquet: the one place that writes recordings.

Two layouts, one schema (schema.py):

* **A dataset directory** (the default, ``record -o DIR``), for recorders left
  running for weeks. Every flush (1 s by default, only when there are events)
  appends the new rows to a journal, one JSON line each, and fdatasyncs it: a
  ``kill -9`` loses at most the last flush interval. Every ``file_interval`` (60 s
  by default), at ``max_rows`` and on close, the journal's rows become one complete
  Parquet file, fsynced and renamed into place, and the journal is deleted. So
  every Parquet file on disk is readable with no repair step, and the next
  recorder on the directory turns a crashed recorder's journal into its Parquet
  file before it starts (``_recover_journals``). Why two steps: writing Parquet
  is the costliest thing the recorder does, most of it in pyarrow's code that
  goes cold between flushes (~2,400 memory pages a flush, BENCHMARKS.md), while a
  JSON append is a few; and a file a minute, not a second, is 60x fewer small
  files for readers to open. ``file_interval <= flush_interval`` writes Parquet
  at every flush and keeps no journal. Files sit in hive-style partitions
  ``host=<name>/date=<YYYY-MM-DD>/``, so many hosts' recordings can share a tree;
  the ``host`` column lives in the path, not in the files (Spark refuses a column
  that is both). ``compact()`` merges a partition's small files.
* **A single file** (``record -o FILE.parquet``): row groups appended each flush,
  the footer written on close. Readable only after a clean stop (SIGINT/SIGTERM).

Both buffer at most ``max_rows`` rows between flushes, and put the notifier's
counters (adds, removes, lost, missed) in each file's key-value metadata: a loss is
never silent. Files are created 0600 and directories 0700, never through a symlink.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import re
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RecordingError
from .events import ContainerEvent, EventType
from .schema import DATASET_SCHEMA, SCHEMA, event_to_row, row_from_json, rows_to_table

DEFAULT_DATASET = "runctrace-data"

# How each flush's small file (or row group) is written. Snappy, not zstd: zstd sets
# up a compressor per column chunk, which made it 2.5x the CPU of snappy for a
# flush of ~80 rows (2.4 vs 0.9 ms, measured), for files 5% smaller. No min/max
# statistics for config_json: each spec's full text twice over, which nearly
# doubled a small file, and no reader prunes on it. compact() writes zstd: one
# large file, read many times, is where a smaller file pays.
_FLUSH_OPTIONS = {
    "compression": "snappy",
    "write_statistics": [name for name in SCHEMA.names if name != "config_json"],
}
_COMPACT_OPTIONS = {**_FLUSH_OPTIONS, "compression": "zstd"}


# The journal of a dataset recorder: `.journal-<pid>-<segment>.jsonl` in its host
# directory. The leading dot keeps it out of every reader's listing (pyarrow, DuckDB
# and Spark skip hidden files); the pid and segment name the Parquet file(s) it
# becomes, so a recovery that is itself interrupted never writes a row twice.
JOURNAL_NAME = re.compile(r"^\.journal-(\d+)-(\d+)\.jsonl$")
# One encoder made once: json.dumps with any option builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
# A journal line starting with this holds the recorder's counters, not a row.
_STATS_MARK = b"#"


def default_output() -> str:
    return DEFAULT_DATASET


def _why(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if err.errno == errno.ELOOP:
        return "a symlink is in the way (not followed)"
    return err.strerror or str(err)


def _warm_up() -> None:
    """Convert and write one throwaway row, at start-up.

    pyarrow's first conversion of each column type and its first Parquet write
    cost ~25 ms of CPU, and that first conversion imports pandas (~250 ms) if the
    process has not yet: paid here, not in the first flush, in the middle of the
    first burst of containers while the notifier's thread waits for the GIL.
    """
    sample = ContainerEvent(
        EventType.ADD, "warm-up", 1, {"process": {"args": ["x"]}, "annotations": {"k": "v"}}, "/", 0, "none",
        runtime_args=["runc"],
    )
    pq.write_table(rows_to_table([event_to_row(sample, "h")]), io.BytesIO(), **_FLUSH_OPTIONS)


class _Buffered:
    """Row buffering and the flush schedule shared by both layouts."""

    def __init__(self, host: Optional[str], flush_interval: float, max_rows: int, keep_env: bool) -> None:
        _warm_up()
        self.host = host or socket.gethostname()
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.keep_env = keep_env
        self.rows_written = 0
        self.stats: dict = {}
        self.stats_source = None  # a callable giving the notifier's counters at each flush
        self.backend: Optional[str] = None
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._pending_since = 0.0  # time.monotonic() of the oldest pending row

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush_due_in(self) -> Optional[float]:
        """Seconds until the pending rows must be written (0: now), None if none are pending.

        The oldest pending row may wait ``flush_interval``: that is all a crash can
        lose. The caller (``Session``) calls :meth:`flush` in time.
        """
        due = [d for d in (self.rows_due_in(), self._files_due_in()) if d is not None]
        return min(due) if due else None

    def rows_due_in(self) -> Optional[float]:
        """Seconds until the pending rows are written (0: now), None if none are pending."""
        if not self._rows:
            return None
        return max(0.0, self._pending_since + self.flush_interval - time.monotonic())

    def _files_due_in(self) -> Optional[float]:
        """When journaled rows must become a Parquet file (dataset layout only)."""
        return None

    def _write_files(self) -> None:
        """Turn journaled rows into Parquet files (dataset layout only)."""

    def write(self, event: ContainerEvent) -> None:
        """Buffer one event; written by :meth:`flush` (or at ``max_rows``, or close)."""
        with self._lock:
            if not self._rows:
                self._pending_since = time.monotonic()
            self._rows.append(event_to_row(event, self.host, self.keep_env))
            full = len(self._rows) >= self.max_rows
        if full:
            self.flush()

    def flush(self, files: bool = False) -> None:
        """Write the pending rows; and the journaled ones as Parquet if that is due,
        or now with ``files`` (close, compact)."""
        with self._lock:
            rows = self._rows
            try:
                if rows:
                    self._write_rows(rows)
                    self._rows = []
                    self.rows_written += len(rows)
                if files or self._files_due_in() == 0:
                    self._write_files()
            except OSError as err:
                # keep the rows: a later flush may succeed once space is freed
                raise RecordingError(f"cannot write to {self.target}: {_why(err)}") from err

    def _stats(self) -> dict:
        """The notifier's counters so far, and its backend: what each file's metadata says."""
        stats = self.stats_source() if self.stats_source is not None else self.stats
        return {"stats": stats, "backend": self.backend}

    def _metadata(self, recorded: Optional[dict] = None) -> dict[bytes, bytes]:
        """``recorded``: another recorder's :meth:`_stats` (a recovered journal's)."""
        recorded = recorded if recorded is not None else self._stats()
        meta = dict(SCHEMA.metadata)
        meta[b"runctrace.stats"] = json.dumps(recorded.get("stats") or {}).encode()
        meta[b"runctrace.host"] = self.host.encode()
        if recorded.get("backend"):
            meta[b"runctrace.backend"] = str(recorded["backend"]).encode()
        return meta

    target = ""

    def _write_rows(self, rows: list[dict]) -> None:
        raise NotImplementedError


class ParquetRecorder(_Buffered):
    """One Parquet file, complete once closed.

    Nothing in it is readable before its footer is written on close, so a row group
    written every second would buy no safety: rows are written as a row group every
    ``file_interval`` (or ``max_rows``), like a dataset's files.
    """

    def __init__(
        self, path: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False, file_interval: float = 60.0,
    ) -> None:
        super().__init__(host, max(flush_interval, file_interval), max_rows, keep_env)
        self.path = self.target = path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise RecordingError(f"cannot write {path}: directory {parent} does not exist")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise RecordingError(f"cannot write {path}: {_why(err)}") from err
        self._file = os.fdopen(fd, "wb")
        self._writer = pq.ParquetWriter(self._file, SCHEMA, **_FLUSH_OPTIONS)

    def _write_rows(self, rows: list[dict]) -> None:
        self._writer.write_table(rows_to_table(rows))

    def close(self, stats: Optional[dict] = None, backend: Optional[str] = None, compact: bool = False) -> None:
        self.stats, self.backend, self.stats_source = stats or {}, backend, None
        try:
            self.flush()
        finally:
            try:
                self._writer.add_key_value_metadata({k.decode(): v.decode() for k, v in self._metadata().items()})
                self._writer.close()
                self._file.close()
            except OSError as err:
                raise RecordingError(f"cannot finish {self.path}: {_why(err)}") from err


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


# A journal's ".new" name (filesystems without O_TMPFILE) lives for microseconds
# in a live recorder; one this old was left by a crash before its rename.
_STALE_NEW_S = 60.0


def _unlink_stale(name: str, dir_fd: int) -> None:
    try:
        if time.time() - os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime > _STALE_NEW_S:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


_JOURNAL_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
# link(2) cannot work here (no /proc for an O_TMPFILE's link, or a filesystem
# without hard links); other errors (a full disk...) are errors
_CANNOT_LINK = (errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


class _NoFreeName(FileExistsError):
    """Every journal name this recorder may use is taken."""


def _cannot_link(err: BaseException) -> bool:
    return isinstance(err, OSError) and not isinstance(err, _NoFreeName) and err.errno in _CANNOT_LINK


def _still_named(fd: int, name: str, dir_fd: int) -> bool:
    """Is the file open as ``fd`` still the one called ``name``?"""
    try:
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _rename_unless_taken(src: str, dst: str, dir_fd: int) -> None:
    try:
        os.stat(dst, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    raise FileExistsError(errno.EEXIST, "taken", dst)


def _open_dir(name: str, dir_fd: Optional[int] = None, create: bool = True) -> int:
    """Open (creating 0700 if missing) a directory without following a symlink."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass  # another writer made it first
    return os.open(name, flags, dir_fd=dir_fd)



class _Journal:
    """The segment of rows not yet in a Parquet file, kept flock'd while its recorder lives.

    The lock is how another recorder starting on the directory tells a live journal
    from a crashed one (flock locks die with their process). So the file must never
    be visible under its name unlocked: it is made nameless (``O_TMPFILE``),
    locked, and only then linked in, which also refuses to replace an existing
    file (a recorder with the same pid in another pid namespace). Filesystems
    without ``O_TMPFILE``, or hosts without /proc, get a dot-name ending ``.new``
    instead, linked in once locked (renamed, where the filesystem has no hard
    links); recovery leaves such a file alone while it is young (``_STALE_NEW_S``).
    The directory is fsynced after, so the name survives a power cut with the rows.
    """

    def __init__(self, dir_fd: int, segment: int) -> None:
        self.dir_fd = dir_fd
        self.size = 0
        self.fd = self._nameless(segment)
        if self.fd < 0:
            self.fd = self._named(segment)
        try:
            os.fsync(dir_fd)
        except BaseException:
            # unlocked once closed: the name must not outlive this failure, or the
            # next recorder would recover an empty journal, or a live one's
            _unlink_quietly(self.name, dir_fd)
            os.close(self.fd)
            raise

    def _nameless(self, segment: int) -> int:
        """An O_TMPFILE, locked, then linked in through /proc; -1 if this cannot work here."""
        try:
            fd = os.open(".", _JOURNAL_FLAGS | os.O_TMPFILE, 0o600, dir_fd=self.dir_fd)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            return -1  # no O_TMPFILE on this filesystem
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._link_free_name(segment, lambda name: os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=self.dir_fd))
            return fd
        except BaseException as err:
            os.close(fd)
            if _cannot_link(err):
                return -1  # no /proc mounted, or no hard links on this filesystem
            raise

    def _named(self, segment: int) -> int:
        """A dot-name ending ``.new``, locked, then linked (or, with no hard links, renamed) in."""
        tmp = f".journal-{os.getpid()}-{segment:06d}-{os.urandom(4).hex()}.jsonl.new"
        fd = os.open(tmp, _JOURNAL_FLAGS | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=self.dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._link_free_name(segment, lambda name: os.link(
                    tmp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False))
            except OSError as err:
                if not _cannot_link(err):
                    raise
                # no hard links here: rename, which would replace a file silently, so
                # look first (a race only with a recorder of our pid in another pid
                # namespace, on a filesystem without links)
                self._link_free_name(segment, lambda name: _rename_unless_taken(tmp, name, self.dir_fd))
            _unlink_quietly(tmp, self.dir_fd)
            return fd
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp, self.dir_fd)
            raise

    def _link_free_name(self, segment: int, link: Callable[[str], None]) -> None:
        for attempt in range(100):
            self.name = f".journal-{os.getpid()}-{segment + attempt * 1_000_000:06d}.jsonl"
            try:
                link(self.name)
                return
            except FileExistsError:
                continue  # another recorder's, with our pid (another pid namespace)
        raise _NoFreeName(errno.EEXIST, "no free journal name")

    def append(self, rows: list[dict], stats: dict) -> None:
        """The rows and the counters so far, in one write(2), then fdatasync."""
        data = "".join([*(_encode(row) + "\n" for row in rows), "#", _encode(stats), "\n"]).encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            os.fdatasync(self.fd)
        except OSError:
            # a full disk mid-write: cut the partial lines, so the retry of these
            # rows does not leave them twice (or a torn line) in the journal
            os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def remove(self) -> None:
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
            os.fsync(self.dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _read_journal(fd: int) -> tuple[list[dict], dict, int]:
    """A journal's rows, its last counters, and how many lines were unreadable.

    A last line without its newline is a write cut short by a crash (power loss;
    a kill -9 does not split a write(2) to a local file) and counts as unreadable.
    """
    with os.fdopen(os.dup(fd), "rb") as f:
        lines = f.read().split(b"\n")
    rows, stats, bad = [], {}, 0
    bad += lines.pop() != b""  # the text after the last newline
    for line in lines:
        try:
            value = json.loads(line[1:] if line.startswith(_STATS_MARK) else line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(value, dict):
            bad += 1
        elif line.startswith(_STATS_MARK):
            stats = value
        else:
            rows.append(row_from_json(value))
    return rows, stats, bad


class DatasetRecorder(_Buffered):
    """A hive-partitioned directory of small, complete, crash-safe Parquet files."""

    def __init__(
        self, directory: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False, file_interval: float = 60.0,
    ) -> None:
        super().__init__(host, flush_interval, max_rows, keep_env)
        self.file_interval = file_interval
        self.directory = self.target = directory
        if "/" in self.host or self.host in ("", ".", ".."):
            raise RecordingError(f"host name {self.host!r} cannot name a partition directory")
        parent = os.path.dirname(os.path.abspath(directory))
        if not os.path.isdir(parent):
            raise RecordingError(f"cannot write {directory}: directory {parent} does not exist")
        try:
            if os.path.lexists(directory) and not stat.S_ISDIR(os.lstat(directory).st_mode):
                raise RecordingError(f"cannot write {directory}: it exists and is not a directory (symlinks are not followed)")
            self._root_fd = _open_dir(os.path.abspath(directory))
            self._host_fd = _open_dir(f"host={self.host}", self._root_fd)
            probe = f".runctrace-probe-{os.getpid()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self._host_fd))
            os.unlink(probe, dir_fd=self._host_fd)
        except OSError as err:
            raise RecordingError(f"cannot write {directory}: {_why(err)}") from err
        self._date_fds: dict[str, int] = {}
        self._seq = 0
        self.files_written = 0
        self._segment = 0  # names the journal, and the Parquet files it becomes
        self._journal: Optional[_Journal] = None
        self._journaled: list[dict] = []  # the rows in the journal, for its Parquet file
        self._journaled_since = 0.0
        self.recovered = 0  # rows of crashed recorders' journals written at start
        self.unrecovered: list[str] = []  # journals that could not be read: kept, and named
        try:
            self._clean_leftovers()
            self._recover_journals()
        except OSError as err:
            for fd in [*self._date_fds.values(), self._host_fd, self._root_fd]:
                os.close(fd)
            raise RecordingError(f"cannot recover earlier recordings in {directory}: {_why(err)}") from err

    # ----------------------------------------------------------------- writing

    def _date_fd(self, date: str) -> int:
        fd = self._date_fds.get(date)
        if fd is None:
            fd = self._date_fds[date] = _open_dir(f"date={date}", self._host_fd)
        return fd

    def _write_rows(self, rows: list[dict]) -> None:
        if self.file_interval <= self.flush_interval:
            self._segment += 1
            self._write_parts(rows, os.getpid(), self._segment, self._metadata())
            return
        if self._journal is None:
            self._segment += 1
            self._journal = _Journal(self._host_fd, self._segment)
            self._segment = int(JOURNAL_NAME.match(self._journal.name)[2])  # the name it got
            self._journaled_since = time.monotonic()
        self._journal.append(rows, self._stats())
        self._journaled.extend(rows)

    def _files_due_in(self) -> Optional[float]:
        if not self._journaled:
            return None
        if len(self._journaled) >= self.max_rows:
            return 0.0
        return max(0.0, self._journaled_since + self.file_interval - time.monotonic())

    def _write_files(self) -> None:
        if self._journal is None:
            return
        self._write_parts(self._journaled, os.getpid(), self._segment, self._metadata())
        journal, self._journal, self._journaled = self._journal, None, []
        journal.remove()  # after the files: a crash in between writes nothing twice

    def _write_parts(self, rows: list[dict], pid: int, segment: int, meta: dict, skip_existing: bool = False) -> None:
        """One Parquet file per date partition, named by the writer's pid and segment."""
        by_date: dict[str, list[dict]] = {}
        for row in rows:
            date = datetime.fromtimestamp(row["time_ns"] / 1e9, timezone.utc).strftime("%Y-%m-%d")
            by_date.setdefault(date, []).append(row)
        for date, date_rows in by_date.items():
            dir_fd = self._date_fd(date)
            name = f"part-{date_rows[0]['time_ns']}-{pid}-{segment:06d}.parquet"
            if skip_existing and _exists(name, dir_fd):
                continue  # written before a crash that came before the journal's removal
            # DATASET_SCHEMA has no host column (the partition path holds it)
            self._write_file(dir_fd, rows_to_table(date_rows, DATASET_SCHEMA), name, meta)

    def _write_file(self, dir_fd: int, table: pa.Table, name: str, meta: dict, options: dict = _FLUSH_OPTIONS) -> str:
        """Write ``table`` as a complete file: temp name, fsync, rename, fsync the dir."""
        tmp = f".{name}.tmp"  # a leading dot: pyarrow, DuckDB and Spark skip it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                pq.write_table(table.replace_schema_metadata(meta), f, **options)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
        self.files_written += 1
        return name

    def _recover_journals(self) -> None:
        """Write the journals that crashed recorders left in this host's directory as Parquet.

        A journal still locked belongs to a live recorder, and is left alone; one
        unlinked once we hold its lock was recovered by another recorder starting
        at the same moment. One that cannot be made into a table (it was edited, or
        a future version wrote it) is kept, renamed ``.bad``, and named in
        ``unrecovered``: the recorder starts anyway, and nothing is deleted.
        """
        for name in sorted(os.listdir(self._host_fd)):
            if name.startswith(".journal-") and name.endswith(".jsonl.new"):
                _unlink_stale(name, self._host_fd)
            m = JOURNAL_NAME.match(name)
            if not m:
                continue
            try:
                # O_RDWR: NFS emulates flock with fcntl locks, whose exclusive kind needs it
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._host_fd)
            except FileNotFoundError:
                continue  # recovered by another recorder meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live recorder's
                if not _still_named(fd, name, self._host_fd):
                    continue  # recovered (or set aside as .bad) by another recorder before we got the lock
                try:
                    rows, recorded, bad = _read_journal(fd)
                    self._write_parts(rows, int(m[1]), int(m[2]), self._metadata(recorded), skip_existing=True)
                except (pa.ArrowException, KeyError, TypeError, ValueError) as err:
                    os.rename(name, name + ".bad", src_dir_fd=self._host_fd, dst_dir_fd=self._host_fd)
                    self.unrecovered.append(f"{name}.bad ({err})")
                    continue
                os.unlink(name, dir_fd=self._host_fd)
                os.fsync(self._host_fd)
                self.recovered += len(rows)
                if bad:
                    self.unrecovered.append(f"{name}: {bad} unreadable line(s) skipped")
            finally:
                os.close(fd)

    def _clean_leftovers(self) -> None:
        """After a crash: drop half-written temp files, finish an interrupted compaction."""
        for date_name in os.listdir(self._host_fd):
            if not date_name.startswith("date="):
                continue
            dfd = _open_dir(date_name, self._host_fd, create=False)
            try:
                names = os.listdir(dfd)
                for name in names:
                    if name.startswith(".") and name.endswith(".tmp"):
                        os.unlink(name, dir_fd=dfd)
                for name in names:
                    if name.startswith("compact-") and name.endswith(".parquet"):
                        self._drop_sources(dfd, name)
            finally:
                os.close(dfd)

    # -------------------------------------------------------------- compaction

    def compact(self) -> int:
        """Merge each date partition's small files of this host into one; returns files removed.

        The merged file lists its sources in its metadata and is renamed into place
        before they are deleted. A crash in between leaves duplicates only until the
        next start, which deletes the listed sources (see _clean_leftovers).
        """
        self.flush(files=True)
        removed = 0
        for date_name in sorted(os.listdir(self._host_fd)):
            if not date_name.startswith("date="):
                continue
            dfd = self._date_fd(date_name[len("date="):])
            sources = sorted(n for n in os.listdir(dfd) if n.endswith(".parquet") and not n.startswith("."))
            if len(sources) < 2:
                continue
            tables = []
            for name in sources:
                with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd), "rb") as f:
                    tables.append(pq.read_table(f, schema=DATASET_SCHEMA))
            merged = pa.concat_tables(tables).sort_by("time_ns")
            self._seq += 1
            name = self._write_file(
                dfd, merged, f"compact-{merged['time_ns'][0].as_py()}-{os.getpid()}-{self._seq:06d}.parquet",
                {**self._metadata(), b"runctrace.compacted_from": json.dumps(sources).encode()}, _COMPACT_OPTIONS,
            )
            removed += self._drop_sources(dfd, name)
        return removed

    @staticmethod
    def _drop_sources(dir_fd: int, compacted: str) -> int:
        with open(os.open(compacted, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd), "rb") as f:
            meta = pq.read_metadata(f).metadata or {}
        removed = 0
        for source in json.loads(meta.get(b"runctrace.compacted_from", b"[]")):
            if source != compacted and "/" not in source:
                try:
                    os.unlink(source, dir_fd=dir_fd)
                    removed += 1
                except FileNotFoundError:
                    pass
        os.fsync(dir_fd)
        return removed

    # ------------------------------------------------------------------ closing

    def close(self, stats: Optional[dict] = None, backend: Optional[str] = None, compact: bool = False) -> None:
        self.stats, self.backend, self.stats_source = stats or {}, backend, None
        try:
            self.flush(files=True)  # if that fails, the rows stay in the journal for the next start
            if compact:
                self.compact()
        finally:
            if self._journal is not None:
                self._journal.close()  # unlocked: the next recorder here recovers it
            for fd in [*self._date_fds.values(), self._host_fd, self._root_fd]:
                os.close(fd)
            self._date_fds.clear()


def recovery_notes(recorder: _Buffered) -> list[str]:
    """What a dataset recorder found of crashed recorders at start, for the user."""
    notes = []
    if getattr(recorder, "recovered", 0):
        notes.append(f"recovered {recorder.recovered} events from the journal of a recorder that did not stop cleanly")
    notes += [f"journal not recovered: {name}" for name in getattr(recorder, "unrecovered", [])]
    return notes


def open_recorder(output: str, **kwargs) -> _Buffered:
    """A single file for ``*.parquet``; otherwise a crash-safe dataset directory."""
    if output.endswith(".parquet"):
        return ParquetRecorder(output, **kwargs)
    return DatasetRecorder(output, **kwargs)
