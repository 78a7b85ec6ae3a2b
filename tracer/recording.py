"""Write events to Parquet: the one place that writes recordings.

Two layouts, one schema (schema.py):

* **A dataset directory** (the default, ``record -o DIR``), for recorders left
  running for weeks. Every flush (1 s by default, only when there are events)
  writes one complete Parquet file, fsyncs it and renames it into place, so a
  ``kill -9`` loses at most the last flush interval and every file on disk is
  readable with no repair step. Files sit in hive-style partitions
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
import io
import json
import os
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RecordingError
from .events import ContainerEvent, EventType
from .schema import DATASET_SCHEMA, SCHEMA, event_to_row, rows_to_table

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
        if not self._rows:
            return None
        return max(0.0, self._pending_since + self.flush_interval - time.monotonic())

    def write(self, event: ContainerEvent) -> None:
        """Buffer one event; written by :meth:`flush` (or at ``max_rows``, or close)."""
        with self._lock:
            if not self._rows:
                self._pending_since = time.monotonic()
            self._rows.append(event_to_row(event, self.host, self.keep_env))
            full = len(self._rows) >= self.max_rows
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._rows:
                return
            rows = self._rows
            try:
                self._write_rows(rows)
            except OSError as err:
                # keep the rows: a later flush may succeed once space is freed
                raise RecordingError(f"cannot write to {self.target}: {_why(err)}") from err
            self._rows = []
            self.rows_written += len(rows)

    def _metadata(self) -> dict[bytes, bytes]:
        meta = dict(SCHEMA.metadata)
        stats = self.stats_source() if self.stats_source is not None else self.stats
        meta[b"runctrace.stats"] = json.dumps(stats).encode()
        meta[b"runctrace.host"] = self.host.encode()
        if self.backend:
            meta[b"runctrace.backend"] = self.backend.encode()
        return meta

    target = ""

    def _write_rows(self, rows: list[dict]) -> None:
        raise NotImplementedError


class ParquetRecorder(_Buffered):
    """One Parquet file, complete once closed."""

    def __init__(
        self, path: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False,
    ) -> None:
        super().__init__(host, flush_interval, max_rows, keep_env)
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


class DatasetRecorder(_Buffered):
    """A hive-partitioned directory of small, complete, crash-safe Parquet files."""

    def __init__(
        self, directory: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False,
    ) -> None:
        super().__init__(host, flush_interval, max_rows, keep_env)
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
        self._clean_leftovers()

    # ----------------------------------------------------------------- writing

    def _date_fd(self, date: str) -> int:
        fd = self._date_fds.get(date)
        if fd is None:
            fd = self._date_fds[date] = _open_dir(f"date={date}", self._host_fd)
        return fd

    def _write_rows(self, rows: list[dict]) -> None:
        by_date: dict[str, list[dict]] = {}
        for row in rows:
            date = datetime.fromtimestamp(row["time_ns"] / 1e9, timezone.utc).strftime("%Y-%m-%d")
            by_date.setdefault(date, []).append(row)
        for date, date_rows in by_date.items():
            # DATASET_SCHEMA has no host column (the partition path holds it)
            self._write_file(self._date_fd(date), rows_to_table(date_rows, DATASET_SCHEMA), date_rows[0]["time_ns"])

    def _write_file(
        self, dir_fd: int, table: pa.Table, first_ns: int, prefix: str = "part", extra_meta: Optional[dict] = None,
        options: dict = _FLUSH_OPTIONS,
    ) -> str:
        """Write ``table`` as a complete file: temp name, fsync, rename, fsync the dir."""
        meta = {**self._metadata(), **(extra_meta or {})}
        self._seq += 1
        name = f"{prefix}-{first_ns}-{os.getpid()}-{self._seq:06d}.parquet"
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
        self.flush()
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
            name = self._write_file(
                dfd, merged, merged["time_ns"][0].as_py(), prefix="compact",
                extra_meta={b"runctrace.compacted_from": json.dumps(sources).encode()}, options=_COMPACT_OPTIONS,
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
            self.flush()
            if compact:
                self.compact()
        finally:
            for fd in [*self._date_fds.values(), self._host_fd, self._root_fd]:
                os.close(fd)
            self._date_fds.clear()


def open_recorder(output: str, **kwargs) -> _Buffered:
    """A single file for ``*.parquet``; otherwise a crash-safe dataset directory."""
    if output.endswith(".parquet"):
        return ParquetRecorder(output, **kwargs)
    return DatasetRecorder(output, **kwargs)
