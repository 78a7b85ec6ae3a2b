"""Write events to Parquet: the one place that writes recordings.

Two layouts, one schema (schema.py):

* **A dataset directory** (the default, ``record -o DIR``), for recorders left
  running for weeks. Every flush (1 s by default, only when there are events)
  appends the new rows to a journal, one JSON line each, and fdatasyncs it: a
  ``kill -9`` loses at most the last flush interval. Every ``file_interval`` (60 s
  by default), at ``max_rows``, at ``MEMORY_BUDGET`` bytes of rows and on close,
  the journal's rows become one complete Parquet file, fsynced and renamed into
  place, and the journal is deleted. So every Parquet file on disk is readable
  with no repair step, and the next recorder on the directory turns a crashed
  recorder's journal into its Parquet file before it starts
  (``_recover_journals``). Why two steps: writing Parquet is the costliest thing
  the recorder does, most of it in pyarrow's code that goes cold between flushes
  (~2,400 memory pages a flush, BENCHMARKS.md), while a JSON append is a few; and
  a file a minute, not a second, is 60x fewer small files for readers to open.
  ``file_interval <= flush_interval`` writes Parquet at every flush and keeps no
  journal. Files sit in hive-style partitions ``host=<name>/date=<YYYY-MM-DD>/``,
  so many hosts' recordings can share a tree; the ``host`` column lives in the
  path, not in the files (Spark refuses a column that is both). ``compact()``
  merges a partition's small files.
* **A single file** (``record -o FILE.parquet``): row groups appended to a
  temporary file in the same directory, its footer written on close, then
  renamed over ``FILE.parquet``: the file appears complete, at once, after a
  clean stop (SIGINT/SIGTERM), and nothing of it before.

Both buffer at most ``max_rows`` rows (and ``MEMORY_BUDGET`` bytes) between
flushes, and put the notifier's counters (adds, removes, lost, missed) and their
own (``dropped``) in each file's key-value metadata: a loss is never silent.

**The recorder survives its disk.** A write that fails (a full disk, a quota, an
I/O error) does not stop it: rows wait in memory, up to ``BACKLOG_ROWS`` and
``BACKLOG_BYTES``, and the write is retried with a growing delay; rows that come
while that backlog is full are counted in ``dropped``. ``write_error`` says why
writes fail, until one succeeds. Every row that waited is written exactly once.

**Other users are hostile** (the recorder runs as root, and other local users can
make files and links where it writes). Every file the recorder writes is one it
created: ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600, under an unpredictable
temporary name, then renamed; directories are 0700, never through a symlink. It
refuses a directory (or a parent of it) that another user owns or can write (see
``_judge``, after OpenSSH's StrictModes) unless told ``allow_untrusted_dir``; and
what it reads back (journals, Parquet files) must be a regular file, of bounded
size, and a journal must be its own (``_trusted_journal``).
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import os
import re
import secrets
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from runctrace.errors import RecordingError
from runctrace.events import ContainerEvent, EventType
from runctrace.safetext import printable
from runctrace.store.schema import DATASET_SCHEMA, SCHEMA, event_to_row, row_from_json, rows_to_table

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

# Rows are held in memory until they are written (pending) and, in a dataset, again
# until their Parquet file is (journaled). A row carries its container's spec
# (config_json, up to 16 MiB), so a count of rows bounds nothing: 100 such rows are
# 1.6 GB, and making them one table and one file costs several times that. At this many
# bytes of either, the rows are written now. Ordinary rows are a few KiB, so this
# is thousands of them and ordinary recorders still write a file a minute; a run of
# huge specs makes a file every few rows.
MEMORY_BUDGET = 64 << 20
# While writes fail (a full disk), rows wait in memory up to these; the rows that
# come after are dropped and counted. 256 MiB is tens of thousands of ordinary
# rows, hours of a busy node's churn, and still leaves the host's memory to its
# containers.
BACKLOG_ROWS = 100_000
BACKLOG_BYTES = 256 << 20
# A failed write is retried after 1 s, then 2, 4 ... up to 30 s: not at every
# event (each try may make a journal, or a whole Parquet file, only to remove it),
# and at most 30 s late once space returns.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
# A file's rows are made Arrow tables and written this many bytes at a time, a row
# group each: a conversion holds several copies of what it converts (builders
# that grow by doubling, then the encoder's pages), so a file of MEMORY_BUDGET at
# once would cost several times that. Ordinary files are one row group still.
_ROW_GROUP_BYTES = 8 << 20
# What a row costs beyond its strings (the dict, ints, pointers): an estimate is
# enough, the budgets are not exact.
_ROW_OVERHEAD = 1024


# The journal of a dataset recorder: `.journal-<pid>-<segment>.jsonl` in its host
# directory. The leading dot keeps it out of every reader's listing (pyarrow, DuckDB
# and Spark skip hidden files); the pid and segment name the Parquet file(s) it
# becomes, so a recovery that is itself interrupted never writes a row twice.
# Bounded digits: a name is read back into an int, and into a file name.
JOURNAL_NAME = re.compile(r"^\.journal-(\d{1,10})-(\d{1,10})\.jsonl$")
# One encoder made once: json.dumps with any option builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
# A journal line starting with this holds the recorder's counters, not a row.
_STATS_MARK = b"#"
# The longest journal line recovery reads. A row holds a spec (spec.MAX_CONFIG_BYTES,
# 16 MiB, when read; a little more re-serialised) and fields taken from it, and
# JSON escaping at most triples a byte of text: 256 MiB is far above any row the
# recorder writes, and bounds what one forged line can make recovery hold.
_MAX_LINE = 256 << 20
# The largest journal recovery reads (all its rows are held at once). The recorder
# writes a journal's Parquet file at MEMORY_BUDGET of rows, so its own journals
# stay far below; a larger one is set aside, not read.
_MAX_JOURNAL = 1 << 30
# The largest Parquet file compaction reads (the whole partition is merged in memory).
_MAX_PARQUET = 1 << 30


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


def _row_size(row: dict) -> int:
    """About how many bytes ``row`` holds: its text, and a fixed allowance for the rest."""
    size = _ROW_OVERHEAD
    for value in row.values():
        if isinstance(value, str):
            size += len(value)
        elif isinstance(value, (list, tuple)):
            for item in value:  # a list of strings, or a map's (key, value) pairs
                if isinstance(item, str):
                    size += len(item)
                elif isinstance(item, (list, tuple)):
                    size += sum(len(s) for s in item if isinstance(s, str))
    return size


def _row_groups(rows: list[dict], schema: pa.Schema = DATASET_SCHEMA) -> Iterator[pa.Table]:
    """``rows`` as tables of ``schema`` of about ``_ROW_GROUP_BYTES`` each, made one at a time."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        row_size = _row_size(row)
        if i > start and size + row_size > _ROW_GROUP_BYTES:
            yield rows_to_table(rows[start:i], schema)
            start, size = i, 0
        size += row_size
    if start < len(rows):
        yield rows_to_table(rows[start:], schema)


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


# ---------------------------------------------------------------- trusted places

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # as the kernel's path walk: more is a loop
# Files the recorder creates: only if the name is free (O_EXCL: never into a file
# someone else made, a FIFO or a device), never through a symlink (O_NOFOLLOW),
# readable by the recorder's user only.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TRUST_HINT = (
    "the recorder writes only where no other user can replace what it writes: root or the recorder's "
    "user must own the directory and each one above it, and none may be writable by group or others, "
    "except one with the sticky bit (like /tmp) whose next directory down is owned by root or the "
    "recorder's user and not writable by group or others (others then cannot rename or replace it); "
    "fix that, or pass --allow-untrusted-dir"
)


def _trusted_uids() -> tuple[int, int]:
    return 0, os.geteuid()


def _who(uid: int) -> str:
    return "root" if uid == 0 else f"uid {uid}"


def _resolve(path: str) -> tuple[str, Optional[str]]:
    """``path`` (a directory) with every symlink on it resolved, as the kernel would;
    and, if one of those symlinks is owned by a user other than root or the
    recorder's, why it cannot be trusted (that user can point it elsewhere).

    Resolved here, one component at a time, rather than by ``os.path.realpath``,
    to see each symlink on the way, those inside a symlink's target included. A
    component that does not exist ends the walk: the rest is kept as written.
    """
    trusted = _trusted_uids()
    todo = os.path.join(os.getcwd(), path).split("/")[::-1]  # a stack: next component last
    done, links, problem = "/", 0, None
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            done = os.path.dirname(done)  # of the resolved path, as the kernel does
            continue
        here = os.path.join(done, name)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            return os.path.normpath(os.path.join(here, *todo[::-1])), problem
        if not stat.S_ISLNK(st.st_mode):
            done = here
            continue
        if st.st_uid not in trusted and problem is None:
            problem = f"the symlink {here} is owned by {_who(st.st_uid)}"
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        target = os.readlink(here)
        if target.startswith("/"):
            done = "/"
        todo.extend(target.split("/")[::-1])
    return done, problem


def _judge(chain: list[tuple[str, os.stat_result]], complete: bool = True) -> Optional[str]:
    """Why the last directory of ``chain`` (each directory from / down, with its
    stat) is no safe place to write, or None. Not ``complete``: the chain stops
    above that directory, which the recorder is about to create.

    Like OpenSSH's StrictModes: a user other than root or the recorder's who owns
    one of them, or can write one, can rename it away and put a directory of their
    own in its place, or (the last one) replace the files in it: make the recorder
    write where they choose, or read a journal they forged. One exception, or /tmp
    could hold nothing: a directory others can write *with the sticky bit* is safe
    above a next directory that root or the recorder's user owns and that group
    and others cannot write, because the sticky bit lets no one else rename or
    remove that entry. The last directory gets no such exception: its own entries
    are what the recorder writes.
    """
    trusted = _trusted_uids()
    for i, (path, st) in enumerate(chain):
        if st.st_uid not in trusted:
            return f"{path} is owned by {_who(st.st_uid)}"
        if not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            continue
        mode = f"mode {stat.S_IMODE(st.st_mode):04o}"
        if complete and i == len(chain) - 1:
            return f"{path} is writable by group or others ({mode})"
        if not st.st_mode & stat.S_ISVTX:
            return f"{path} is writable by group or others and has no sticky bit ({mode})"
        if i + 1 < len(chain):  # else: the next one down is the recorder's, made 0700
            below, below_st = chain[i + 1]
            if below_st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return (f"{below} is writable by group or others "
                        f"(mode {stat.S_IMODE(below_st.st_mode):04o}) inside {path}, which others can write")
    return None


def _open_trusted_dir(path: str, output: str, *, create: bool, follow: bool,
                      allow_untrusted: bool) -> tuple[int, list[tuple[str, os.stat_result]]]:
    """An fd of the directory ``path``, created 0700 if ``create`` and missing; and
    each directory from / down to it, with its stat.

    Refused (RecordingError naming ``output``) if :func:`_judge` finds it unsafe,
    or a symlink on the way is (:func:`_resolve`), unless ``allow_untrusted``.
    The path is resolved first, then every component opened from the one above
    with O_NOFOLLOW, and the stat taken from the fd: what is judged is what was
    opened, not a path someone could swap meanwhile. The parents are judged before
    ``path`` is created, so a refusal leaves nothing behind. Unless ``follow``,
    ``path`` itself is not followed if it is a symlink.
    """
    def check(problem: Optional[str]) -> None:
        if problem and not allow_untrusted:
            raise RecordingError(f"refusing to record to {output}: {problem}; {_TRUST_HINT}")

    path = path.rstrip("/") or "/"
    head, tail = os.path.split(path)
    if follow or tail in (".", ".."):  # resolved whole: no last name of its own
        head, tail = path, ""
    parent, bad_link = _resolve(head or ".")
    check(bad_link)
    names = [n for n in parent.split("/") if n] + ([tail] if tail else [])
    fd = os.open("/", _DIR_FLAGS)
    chain = [("/", os.fstat(fd))]
    try:
        for i, name in enumerate(names):
            try:
                below = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not (create and i == len(names) - 1):
                    raise
                check(_judge(chain, complete=False))
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass  # another writer made it first; judged like any other
                below = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = below
            chain.append((os.path.join(chain[-1][0], name), os.fstat(fd)))
        check(_judge(chain))
    except BaseException:
        os.close(fd)
        raise
    return fd, chain


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(name: str, dir_fd: int, max_size: int, flags: int = os.O_RDONLY) -> int:
    """An fd to read the file ``name``, checked to be a regular file of at most
    ``max_size`` bytes; OSError otherwise.

    ``lstat`` first: a device is never opened (opening some acts, e.g. arms a
    watchdog). O_NONBLOCK: a FIFO put there since would otherwise block the open
    forever, waiting for a writer; O_NOFOLLOW: never a symlink's target. The
    checks are then made again on the opened fd: that, not the name, is what is read.
    """
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, f"{_kind(mode)}, not a regular file", name)
    fd = os.open(name, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file", name)
        if st.st_size > max_size:
            raise OSError(errno.EFBIG, f"larger than {max_size} bytes", name)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------------------- buffering

class _Buffered:
    """Row buffering, the flush schedule, and surviving failed writes: shared by both layouts."""

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
        # Why writes fail now ("cannot write to ...: no space left on the device"),
        # None once one succeeds; and the rows dropped so far because the rows
        # waiting for a write filled the backlog. For the status line.
        self.write_error: Optional[str] = None
        self.dropped = 0
        self.max_backlog_rows = max(BACKLOG_ROWS, max_rows)
        self.max_backlog_bytes = BACKLOG_BYTES
        self._rows: list[dict] = []
        self._sizes: list[int] = []  # _row_size of each of _rows
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._pending_since = 0.0  # time.monotonic() of the oldest pending row
        self._retry_at = 0.0  # while writes fail: no write is tried on schedule before this
        self._retry_delay = 0.0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush_due_in(self) -> Optional[float]:
        """Seconds until the pending rows must be written (0: now), None if none are pending.

        The oldest pending row may wait ``flush_interval``: that is all a crash can
        lose. The caller (``Session``) calls :meth:`flush` in time. While writes
        fail, not before the next retry.
        """
        due = [d for d in (self.rows_due_in(), self._files_due_in()) if d is not None]
        return max(min(due), self._retry_at - time.monotonic()) if due else None

    def rows_due_in(self) -> Optional[float]:
        """Seconds until the pending rows are written (0: now), None if none are pending."""
        if not self._rows:
            return None
        now = time.monotonic()
        return max(0.0, self._pending_since + self.flush_interval - now, self._retry_at - now)

    # The second stage of a write: a dataset's journaled rows becoming Parquet files;
    # a single file's row groups, given to the writer, reaching the disk.

    def _files_due_in(self) -> Optional[float]:
        """When the second stage is due (0: now), None if it has nothing to do."""
        return None

    def _files_full(self) -> bool:
        """Must the second stage be done before more rows are written?"""
        return False

    def _write_files(self) -> None:
        """Do the second stage; OSError if it cannot be done now."""

    def write(self, event: ContainerEvent) -> None:
        """Buffer one event; written by :meth:`flush` (or at ``max_rows``, or close).

        While writes fail, rows wait here up to ``max_backlog_rows`` and
        ``max_backlog_bytes``; then the newest are dropped, and counted in
        ``dropped``. The newest: a row once accepted is never thrown away, so the
        rows kept run unbroken from the last write to the moment the backlog
        filled, and the hole is one stretch, from then until writes resume, as a
        kernel queue overflow makes one. Dropping the oldest would start the hole
        at the last write and take first the adds of the containers that started
        earliest in the outage, those most likely still running when writes
        resume: an add is the only row with the container's spec, and no later
        row repeats it.
        """
        with self._lock:
            if len(self._rows) >= self.max_backlog_rows or self._pending_bytes >= self.max_backlog_bytes:
                self.dropped += 1
                return
            row = event_to_row(event, self.host, self.keep_env)
            size = _row_size(row)
            if not self._rows:
                self._pending_since = time.monotonic()
            self._rows.append(row)
            self._sizes.append(size)
            self._pending_bytes += size
            full = len(self._rows) >= self.max_rows or self._pending_bytes >= MEMORY_BUDGET
            due = full and time.monotonic() >= self._retry_at
        if due:
            self.flush()

    def flush(self, files: bool = False) -> None:
        """Write the pending rows; and the journaled ones as Parquet if that is due,
        or now with ``files`` (close, compact).

        Never raises for a failed write (a full disk, EIO...): the rows stay in
        memory, ``write_error`` says why, and the next try waits (``RETRY_*``) as
        far as :meth:`flush_due_in` is concerned; a call here always tries.
        The rows go in slices of at most MEMORY_BUDGET bytes, each made durable
        (and, at the budget, made a file) before the next is read: a backlog
        written at once when space returns would hold all of it twice over.
        """
        with self._lock:
            tried = False
            try:
                while self._rows:
                    if self._files_full():
                        tried = True
                        self._write_files()
                    n, size = 0, 0
                    while n < len(self._rows) and (n == 0 or size + self._sizes[n] <= MEMORY_BUDGET):
                        size += self._sizes[n]
                        n += 1
                    tried = True
                    self._write_rows(self._rows[:n], self._sizes[:n])
                    del self._rows[:n], self._sizes[:n]
                    self._pending_bytes -= size
                    self.rows_written += n
                if files or self._files_due_in() == 0:
                    tried = True
                    self._write_files()
            except OSError as err:
                self.write_error = f"cannot write to {self.target}: {_why(err)}"
                self._retry_delay = min(RETRY_MAX_S, self._retry_delay * 2 or RETRY_FIRST_S)
                self._retry_at = time.monotonic() + self._retry_delay
                return
            if tried:
                self.write_error, self._retry_delay, self._retry_at = None, 0.0, 0.0

    def _stats(self) -> dict:
        """The notifier's counters so far, and its backend: what each file's metadata says."""
        stats = self.stats_source() if self.stats_source is not None else self.stats
        return {"stats": {**stats, "dropped": self.dropped}, "backend": self.backend}

    def _metadata(self, recorded: Optional[dict] = None) -> dict[bytes, bytes]:
        """``recorded``: another recorder's :meth:`_stats` (a recovered journal's)."""
        recorded = recorded if recorded is not None else self._stats()
        meta = dict(SCHEMA.metadata)
        meta[b"runctrace.stats"] = json.dumps(recorded.get("stats") or {}).encode()
        meta[b"runctrace.host"] = self.host.encode()
        if recorded.get("backend"):
            meta[b"runctrace.backend"] = str(recorded["backend"]).encode()
        return meta

    def _lost_at_close(self) -> int:
        """Rows that close could not write: counted as dropped, for the file's metadata."""
        lost = len(self._rows)
        self.dropped += lost
        self._rows, self._sizes, self._pending_bytes = [], [], 0
        return lost

    target = ""

    def _write_rows(self, rows: list[dict], sizes: list[int]) -> None:
        raise NotImplementedError


class _Spool:
    """The file object a ParquetWriter writes into: what the disk refuses waits here.

    pyarrow's writer keeps its own account of the file (each page's offset); a
    write it sees fail leaves it unusable, and the rows it held lost. So a write
    here never fails: bytes the disk refuses (full, quota, EIO) wait in memory and
    go out, in order, at the next :meth:`drain`, which raises while they cannot.
    The recorder gives the writer no rows while anything waits, so what waits is
    at most one row group (and, at close, the footer).
    """

    _CHUNK = 1 << 20  # written out once this much has gathered: pyarrow writes in small pieces

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: Optional[OSError] = None
        self._waiting = bytearray()
        self.closed = False

    def write(self, data) -> int:
        self._waiting += data
        if len(self._waiting) >= self._CHUNK and self.error is None:
            try:
                self.drain()
            except OSError:
                pass  # kept, in self.error: the writer must not see it
        return len(data)

    def drain(self) -> None:
        written = 0
        try:
            with memoryview(self._waiting) as view:
                while written < len(view):
                    written += os.write(self.fd, view[written:])
        except OSError as err:
            self.error = err
            raise
        finally:
            del self._waiting[:written]
        self.error = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


class ParquetRecorder(_Buffered):
    """One Parquet file, complete once closed.

    Nothing in it is readable before its footer is written on close, so a row group
    written every second would buy no safety: rows are written as a row group every
    ``file_interval`` (or ``max_rows``, or MEMORY_BUDGET), like a dataset's files.
    They go to a temporary file beside ``path``, renamed over it on close.
    """

    def __init__(
        self, path: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False, file_interval: float = 60.0, allow_untrusted_dir: bool = False,
    ) -> None:
        super().__init__(host, max(flush_interval, file_interval), max_rows, keep_env)
        self.path = self.target = path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise RecordingError(f"cannot write {path}: directory {parent} does not exist")
        self.name = os.path.basename(path)
        try:
            self._dir_fd, _ = _open_trusted_dir(os.path.dirname(path) or ".", path, create=False, follow=True,
                                                allow_untrusted=allow_untrusted_dir)
        except OSError as err:
            raise RecordingError(f"cannot write {path}: {_why(err)}") from err
        try:
            try:
                st = os.stat(self.name, dir_fd=self._dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise RecordingError(
                        f"cannot write {path}: it exists and is {_kind(st.st_mode)}; the recorder replaces "
                        "only a regular file, and never follows a symlink")
            except FileNotFoundError:
                pass
            # unpredictable, so no one can put a FIFO or a link there first; a dot-name,
            # so readers skip it
            self._tmp = f".{self.name}.{secrets.token_hex(8)}.tmp"
            self._fd = os.open(self._tmp, _CREATE_FLAGS, 0o600, dir_fd=self._dir_fd)
        except OSError as err:
            os.close(self._dir_fd)
            raise RecordingError(f"cannot write {path}: {_why(err)}") from err
        except BaseException:
            os.close(self._dir_fd)
            raise
        self._spool = _Spool(self._fd)
        self._writer = pq.ParquetWriter(self._spool, SCHEMA, **_FLUSH_OPTIONS)

    def _write_rows(self, rows: list[dict], sizes: list[int]) -> None:
        # from here on the rows are the writer's: whatever the disk says, they wait in the spool
        for table in _row_groups(rows, SCHEMA):
            self._writer.write_table(table)

    # The second stage: the bytes of row groups that wait in the spool. Drained
    # before any new row group (flush), and due as soon as there are any: a
    # failure is retried on the schedule of every failed write.

    def _files_full(self) -> bool:
        return self._spool.waiting > 0

    def _files_due_in(self) -> Optional[float]:
        return 0.0 if self._spool.waiting else None

    def _write_files(self) -> None:
        self._spool.drain()

    def close(self, stats: Optional[dict] = None, backend: Optional[str] = None, compact: bool = False) -> None:
        """Write the footer, and rename the file into place.

        RecordingError if that cannot be done (a disk still full): the message
        says what is lost, one line for the CLI; the temporary file is removed.
        """
        self.stats, self.backend, self.stats_source = stats or {}, backend, None
        self.flush()
        lost = self._lost_at_close() if self._rows else 0
        try:
            self._writer.add_key_value_metadata({k.decode(): v.decode() for k, v in self._metadata().items()})
            self._writer.close()  # the footer, into the spool
            self._spool.drain()
            os.fsync(self._fd)
            os.rename(self._tmp, self.name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            os.fsync(self._dir_fd)
        except OSError as err:
            _unlink_quietly(self._tmp, self._dir_fd)
            raise RecordingError(
                f"cannot finish {self.path}: {_why(err)}; its {self.rows_written + lost} events are lost"
            ) from err
        finally:
            os.close(self._fd)
            os.close(self._dir_fd)
        if lost:
            raise RecordingError(
                f"{self.path} is written without its last {lost} events: {self.write_error or 'unwritable'}")


# ------------------------------------------------------------------ the journal

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
    """Remove a ``.new`` name a crash left: one this old, or one already linked in
    under its journal's name (two links: a crash between the link and the unlink
    of the name it came from, which would otherwise make its journal look untrusted)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if time.time() - st.st_mtime > _STALE_NEW_S or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass  # gone meanwhile, or not a file unlink can take: left alone


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
        self.size = 0  # what the journal holds of whole appends: the rest is cut off
        self._torn = False  # an append failed and its part could not yet be cut off
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
            os.fchmod(fd, 0o600)  # exactly: recovery trusts no other mode (a umask could take bits away)
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
        tmp = f".journal-{os.getpid()}-{segment:06d}-{secrets.token_hex(8)}.jsonl.new"
        fd = os.open(tmp, _JOURNAL_FLAGS | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=self.dir_fd)
        try:
            os.fchmod(fd, 0o600)
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
        """The rows and the counters so far, in one write(2), then fdatasync.

        A failure (a full disk mid-write, EIO at the sync) cuts what this append
        wrote, so the retry of these rows leaves them neither twice nor torn.
        """
        if self._torn:
            os.ftruncate(self.fd, self.size)
            self._torn = False
        data = "".join([*(_encode(row) + "\n" for row in rows), "#", _encode(stats), "\n"]).encode()
        try:
            with memoryview(data) as view:
                written = 0
                while written < len(view):
                    written += os.write(self.fd, view[written:])
            os.fdatasync(self.fd)
        except OSError:
            self._torn = True
            try:
                os.ftruncate(self.fd, self.size)
                self._torn = False
            except OSError:
                pass  # cut before the next append, which fails until it can be
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




# --------------------------------------------------------------- reading journals

def _set_aside(name: str, suffix: str, dir_fd: int) -> str:
    """Rename ``name`` to ``name + suffix`` (``.1``, ``.2``... after it if taken); never deletes."""
    for n in range(1000):
        new = name + suffix + (f".{n}" if n else "")
        try:
            _rename_unless_taken(name, new, dir_fd)
            return new
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name to set it aside", name + suffix)


def _trusted_journal(st: os.stat_result) -> Optional[str]:
    """Why a journal with this (l)stat is not one this recorder's user wrote, or None.

    The recorder makes its journals as its own user, mode 0600, with one name;
    another user's file, one others could write (or could have), or one with a
    second name (a hard link: someone else's file under this name) could hold
    rows no container made, which recovery would put into a file as root's.
    """
    if not stat.S_ISREG(st.st_mode):
        return _kind(st.st_mode)
    if st.st_uid != os.geteuid():
        return f"owned by {_who(st.st_uid)}"
    if stat.S_IMODE(st.st_mode) != 0o600:
        return f"mode {stat.S_IMODE(st.st_mode):04o}, not 0600"
    if st.st_nlink != 1:
        return f"{st.st_nlink} links"
    return None


class _Unacceptable(ValueError):
    """A journal value the recorder could not have written."""


def _reject_constant(name: str):
    raise _Unacceptable(f"{name} is no number the recorder writes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unacceptable(f"{text} is out of range")
    return value


def _int64(text: str) -> int:
    # 20 digits and a sign is int64's widest: longer is refused before int() reads it
    if len(text) > 20:
        raise _Unacceptable("an integer longer than 64 bits")
    return int(text)


# Total: every line decodes to a value or raises ValueError (or RecursionError, for
# nesting deeper than the interpreter's stack), whatever its bytes. NaN and
# Infinity are JSON that Python accepts but the recorder never writes.
_decode = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64).decode
_SURROGATE = re.compile("[\ud800-\udfff]")  # \\udXXX escapes: no UTF-8 for Parquet


def _fits(value, type_: pa.DataType) -> bool:
    """Can Parquet hold ``value`` (from JSON) in a column of ``type_``? Types it does
    not know are left to pyarrow (a journal it refuses is set aside whole)."""
    if value is None:
        return True
    if pa.types.is_string(type_):
        return isinstance(value, str) and not _SURROGATE.search(value)
    if pa.types.is_integer(type_) or pa.types.is_timestamp(type_):
        bits = type_.bit_width
        low, high = (0, 1 << bits) if pa.types.is_unsigned_integer(type_) else (-(1 << bits - 1), 1 << bits - 1)
        return type(value) is int and low <= value < high
    if pa.types.is_boolean(type_):
        return type(value) is bool
    if pa.types.is_list(type_):
        return isinstance(value, list) and all(_fits(v, type_.value_type) for v in value)
    if pa.types.is_map(type_):
        return isinstance(value, list) and all(
            isinstance(pair, list) and len(pair) == 2 and pair[0] is not None
            and _fits(pair[0], type_.key_type) and _fits(pair[1], type_.item_type) for pair in value)
    return True


def _is_row(value) -> bool:
    """Is ``value`` a row the recorder could have written (every column the schema's type)?"""
    if not isinstance(value, dict):
        return False
    for field in SCHEMA:
        item = value.get(field.name)
        if (item is None and not field.nullable) or not _fits(item, field.type):
            return False
    return True


def _parse_line(line: bytes) -> tuple[str, Optional[dict]]:
    """("row" | "stats", value) of one journal line, or ("bad", None). Never raises."""
    stats = line.startswith(_STATS_MARK)
    try:
        value = _decode((line[1:] if stats else line).decode())
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return "bad", None
    if stats:
        return ("stats", value) if isinstance(value, dict) else ("bad", None)
    return ("row", value) if _is_row(value) else ("bad", None)


def _read_journal(fd: int) -> tuple[list[dict], dict, int, bool]:
    """A journal's rows, its last counters, how many lines were unreadable, and
    whether its last line was torn.

    A line that is not a row the recorder could have written (not JSON, NaN,
    a number out of its column's range, a string where a list goes, longer than
    ``_MAX_LINE``) counts as unreadable, and so does a last line without its
    newline: a write cut short by a crash (power loss; a kill -9 does not split a
    write(2) to a local file). Read line by line: only rows are held, never the
    file whole.
    """
    rows, stats, bad, torn = [], {}, 0, False
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        while line := f.readline(_MAX_LINE + 1):
            if not line.endswith(b"\n"):
                bad += 1
                if len(line) <= _MAX_LINE:
                    torn = True
                    break  # the last line, cut short
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of a line over the cap, a MiB at a time
                continue
            kind, value = _parse_line(line[:-1])
            if kind == "row":
                rows.append(row_from_json(value))
            elif kind == "stats":
                stats = value
            else:
                bad += 1
    return rows, stats, bad, torn


# --------------------------------------------------------------------- the dataset

class DatasetRecorder(_Buffered):
    """A hive-partitioned directory of small, complete, crash-safe Parquet files."""

    def __init__(
        self, directory: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False, file_interval: float = 60.0, allow_untrusted_dir: bool = False,
    ) -> None:
        super().__init__(host, flush_interval, max_rows, keep_env)
        self.file_interval = file_interval
        self.directory = self.target = directory
        if "/" in self.host or self.host in ("", ".", ".."):
            raise RecordingError(f"host name {self.host!r} cannot name a partition directory")
        parent = os.path.dirname(os.path.abspath(directory))
        if not os.path.isdir(parent):
            raise RecordingError(f"cannot write {directory}: directory {parent} does not exist")
        self._root_fd = self._host_fd = -1
        self._date_fds: dict[str, int] = {}
        try:
            if os.path.lexists(directory) and not stat.S_ISDIR(os.lstat(directory).st_mode):
                raise RecordingError(f"cannot write {directory}: it exists and is not a directory (symlinks are not followed)")
            self._root_fd, chain = _open_trusted_dir(directory, directory, create=True, follow=False,
                                                     allow_untrusted=allow_untrusted_dir)
            self._host_fd = _open_dir(f"host={self.host}", self._root_fd)
            # the host directory holds the journals: judged like the directory itself
            host_chain = [*chain, (os.path.join(chain[-1][0], f"host={self.host}"), os.fstat(self._host_fd))]
            problem = _judge(host_chain)
            if problem and not allow_untrusted_dir:
                raise RecordingError(f"refusing to record to {directory}: {problem}; {_TRUST_HINT}")
            probe = f".runctrace-probe-{secrets.token_hex(8)}"
            os.close(os.open(probe, _CREATE_FLAGS, 0o600, dir_fd=self._host_fd))
            os.unlink(probe, dir_fd=self._host_fd)
        except OSError as err:
            self._close_dirs()
            raise RecordingError(f"cannot write {directory}: {_why(err)}") from err
        except BaseException:
            self._close_dirs()
            raise
        self._seq = 0
        self.files_written = 0
        self._segment = 0  # names the journal, and the Parquet files it becomes
        self._journal: Optional[_Journal] = None
        self._journaled: list[dict] = []  # the rows in the journal, for its Parquet file
        self._journaled_bytes = 0
        self._journaled_since = 0.0
        self.recovered = 0  # rows of crashed recorders' journals written at start
        self.unrecovered: list[str] = []  # a note on each journal not simply recovered: kept, and named
        try:
            self._clean_leftovers()
            self._recover_journals()
        except OSError as err:
            self._close_dirs()
            raise RecordingError(f"cannot recover earlier recordings in {directory}: {_why(err)}") from err

    def _close_dirs(self) -> None:
        for fd in [*self._date_fds.values(), self._host_fd, self._root_fd]:
            if fd >= 0:
                os.close(fd)
        self._host_fd = self._root_fd = -1
        self._date_fds.clear()

    # ----------------------------------------------------------------- writing

    def _date_fd(self, date: str) -> int:
        fd = self._date_fds.get(date)
        if fd is None:
            fd = self._date_fds[date] = _open_dir(f"date={date}", self._host_fd)
        return fd

    def _write_rows(self, rows: list[dict], sizes: list[int]) -> None:
        if self.file_interval <= self.flush_interval:
            # the segment moves on only once written: a retry after a failure midway
            # (one date's file written, the next not) writes the same names again
            self._write_parts(rows, os.getpid(), self._segment + 1, self._metadata())
            self._segment += 1
            return
        if self._journal is None:
            self._segment += 1
            self._journal = _Journal(self._host_fd, self._segment)
            self._segment = int(JOURNAL_NAME.match(self._journal.name)[2])  # the name it got
            self._journaled_since = time.monotonic()
        self._journal.append(rows, self._stats())
        self._journaled.extend(rows)
        self._journaled_bytes += sum(sizes)

    def _files_full(self) -> bool:
        return len(self._journaled) >= self.max_rows or self._journaled_bytes >= MEMORY_BUDGET

    def _files_due_in(self) -> Optional[float]:
        if not self._journaled:
            return None
        if self._files_full():
            return 0.0
        return max(0.0, self._journaled_since + self.file_interval - time.monotonic())

    def _write_files(self) -> None:
        if self._journal is None:
            return
        # a retry after a failure here writes the same names (the same segment): nothing twice
        self._write_parts(self._journaled, os.getpid(), self._segment, self._metadata())
        journal, self._journal, self._journaled, self._journaled_bytes = self._journal, None, [], 0
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
            self._write_file(dir_fd, _row_groups(date_rows), name, meta)

    def _write_file(self, dir_fd: int, tables: Iterable[pa.Table], name: str, meta: dict,
                    options: dict = _FLUSH_OPTIONS) -> str:
        """Write ``tables`` as one complete file, a row group each: temp name, fsync,
        rename, fsync the dir."""
        # a leading dot: pyarrow, DuckDB and Spark skip it; unpredictable: no one can
        # have put a FIFO or a link under it first
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                # DATASET_SCHEMA has no host column (the partition path holds it)
                with pq.ParquetWriter(f, DATASET_SCHEMA.with_metadata(meta), **options) as writer:
                    for table in tables:
                        writer.write_table(table)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except BaseException:
            _unlink_quietly(tmp, dir_fd)
            raise
        self.files_written += 1
        return name

    # ---------------------------------------------------------------- recovery

    def _recover_journals(self) -> None:
        """Write the journals that crashed recorders left in this host's directory as Parquet.

        A journal still locked belongs to a live recorder, and is left alone; one
        unlinked once we hold its lock was recovered by another recorder starting
        at the same moment. One this recorder's user did not write alone
        (``_trusted_journal``) is renamed ``.untrusted``, unread; one that cannot
        be made into a table (it was edited, or a future version wrote it) is
        renamed ``.bad``; one with lines that are no row the recorder writes is
        renamed ``.recovered`` once its other rows are in Parquet; one that cannot
        be written now (a full disk) stays for the next start. Each is named in
        ``unrecovered``. The recorder starts anyway, and nothing unread is deleted.
        """
        names = sorted(os.listdir(self._host_fd))
        for name in names:
            if name.startswith(".journal-") and name.endswith(".jsonl.new"):
                _unlink_stale(name, self._host_fd)
        for name in names:
            m = JOURNAL_NAME.match(name)
            if not m:
                continue
            try:
                self._recover_journal(name, int(m[1]), int(m[2]))
            except OSError as err:  # one journal never keeps the recorder from starting
                self.unrecovered.append(f"journal {name} kept as it is: {_why(err)}")

    def _recover_journal(self, name: str, pid: int, segment: int) -> None:
        host_fd = self._host_fd
        try:
            st = os.stat(name, dir_fd=host_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # recovered by another recorder meanwhile
        why = _trusted_journal(st)
        if why is None:
            try:
                # O_RDWR: NFS emulates flock with fcntl locks, whose exclusive kind needs it
                fd = _open_regular(name, host_fd, _MAX_JOURNAL, os.O_RDWR)
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno == errno.EFBIG:
                    self.unrecovered.append(
                        f"journal {name} set aside as {_set_aside(name, '.bad', host_fd)}, unread: {err.strerror}")
                    return
                if err.errno not in (errno.EINVAL, errno.ELOOP):
                    raise
                why = _kind(os.stat(name, dir_fd=host_fd, follow_symlinks=False).st_mode)  # swapped since
        if why is not None:
            self._untrusted(name, why)
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live recorder's
            if not _still_named(fd, name, host_fd):
                return  # recovered (or set aside) by another recorder before we got the lock
            why = _trusted_journal(os.fstat(fd))  # the file opened, not the name stat'ed
            if why is not None:
                self._untrusted(name, why)
                return
            try:
                rows, recorded, bad, torn = _read_journal(fd)
                self._write_parts(rows, pid, segment, self._metadata(recorded), skip_existing=True)
            except OSError as err:
                # the journal is fine, the disk is not (full, EIO): the next start tries again
                self.unrecovered.append(f"journal {name} kept for the next start: {_why(err)}")
                return
            except Exception as err:  # whatever the journal holds, the recorder starts
                # the error may quote the journal: shown to a terminal, short and inert
                why = printable(f"{type(err).__name__}: {err}")
                why = why if len(why) <= 300 else why[:300] + "..."
                self.unrecovered.append(f"journal {name} set aside as {_set_aside(name, '.bad', host_fd)}: {why}")
                return
            self.recovered += len(rows)
            if bad > torn:
                # lines the recorder did not write as they are (edited, damaged, or a
                # future version's): the rows are in Parquet now, the journal is kept
                kept = _set_aside(name, ".recovered", host_fd)
                self.unrecovered.append(f"journal {name}: {len(rows)} event(s) recovered, {bad} unreadable "
                                        f"line(s) skipped; kept as {kept}")
            else:
                os.unlink(name, dir_fd=host_fd)
                if bad:
                    self.unrecovered.append(f"journal {name}: {len(rows)} event(s) recovered, its last line, "
                                            "cut short, skipped")
            os.fsync(host_fd)
        finally:
            os.close(fd)

    def _untrusted(self, name: str, why: str) -> None:
        self.unrecovered.append(
            f"journal {name} set aside as {_set_aside(name, '.untrusted', self._host_fd)}, unread: not trusted ({why})")

    def _clean_leftovers(self) -> None:
        """After a crash: drop half-written temp files, finish an interrupted compaction."""
        for date_name in os.listdir(self._host_fd):
            if not date_name.startswith("date="):
                continue
            try:
                dfd = _open_dir(date_name, self._host_fd, create=False)
            except OSError:
                continue  # not a directory (nor one the recorder made): not its business
            try:
                names = os.listdir(dfd)
                for name in names:
                    if name.startswith(".") and name.endswith(".tmp"):
                        _unlink_quietly(name, dfd)
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
        next start, which deletes the listed sources (see _clean_leftovers). A
        file that is not a regular file, is larger than ``_MAX_PARQUET`` or cannot
        be read as this schema is left out (and in place).
        """
        self.flush(files=True)
        removed = 0
        for date_name in sorted(os.listdir(self._host_fd)):
            if not date_name.startswith("date="):
                continue
            try:
                dfd = self._date_fd(date_name[len("date="):])
            except OSError as err:
                if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                continue  # not a directory: nothing the recorder wrote
            sources, tables = [], []
            for name in sorted(n for n in os.listdir(dfd) if n.endswith(".parquet") and not n.startswith(".")):
                try:
                    fd = _open_regular(name, dfd, _MAX_PARQUET)
                except OSError as err:
                    if err.errno in (errno.EINVAL, errno.EFBIG, errno.ELOOP, errno.ENOENT):
                        continue
                    raise
                try:
                    with open(fd, "rb") as f:
                        tables.append(pq.read_table(f, schema=DATASET_SCHEMA))
                except pa.ArrowException:
                    continue  # not Parquet of this schema: left out, and in place
                sources.append(name)
            if len(sources) < 2:
                continue
            merged = pa.concat_tables(tables).sort_by("time_ns")
            del tables
            self._seq += 1
            name = self._write_file(
                dfd, [merged], f"compact-{merged['time_ns'][0].as_py()}-{os.getpid()}-{self._seq:06d}.parquet",
                {**self._metadata(), b"runctrace.compacted_from": json.dumps(sources).encode()}, _COMPACT_OPTIONS,
            )
            removed += self._drop_sources(dfd, name)
        return removed

    @staticmethod
    def _drop_sources(dir_fd: int, compacted: str) -> int:
        """Delete the sources a compacted file lists; none if it cannot be read as one."""
        try:
            with open(_open_regular(compacted, dir_fd, _MAX_PARQUET), "rb") as f:
                meta = pq.read_metadata(f).metadata or {}
            sources = json.loads(meta.get(b"runctrace.compacted_from", b"[]"))
        except (OSError, pa.ArrowException, ValueError):
            return 0  # not one of ours, or damaged: its sources stay, and so do duplicates
        if not isinstance(sources, list):
            return 0
        removed = 0
        for source in sources:
            if isinstance(source, str) and source != compacted and "/" not in source and not source.startswith("."):
                try:
                    os.unlink(source, dir_fd=dir_fd)
                    removed += 1
                except FileNotFoundError:
                    pass
        os.fsync(dir_fd)
        return removed

    # ------------------------------------------------------------------ closing

    def close(self, stats: Optional[dict] = None, backend: Optional[str] = None, compact: bool = False) -> None:
        """Write what is pending, and the journal's rows as Parquet; then let go.

        RecordingError if that cannot be done (a disk still full): the message
        says, in one line for the CLI, how many events are lost (those never
        written to the journal) and how many wait in the journal, which the next
        recorder on the directory writes as Parquet.
        """
        self.stats, self.backend, self.stats_source = stats or {}, backend, None
        try:
            self.flush(files=True)
            failed = self.write_error
            lost = self._lost_at_close() if self._rows else 0
            waiting = len(self._journaled) if self._journal is not None else 0
            if compact and not failed:
                try:
                    self.compact()
                except OSError as err:
                    failed = f"cannot compact {self.directory}: {_why(err)}; its files stay as they were"
        finally:
            if self._journal is not None:
                self._journal.close()  # unlocked: the next recorder here recovers it
            self._close_dirs()
        if failed:
            parts = [failed]
            if lost:
                parts.append(f"{lost} events are lost")
            if waiting:
                parts.append(f"{waiting} wait in the journal {self._journal.name}, which the next "
                             f"`runctrace record -o {self.directory}` writes as Parquet")
            raise RecordingError("; ".join(parts))


def write_status(recorder: _Buffered) -> str:
    """What the status line adds about writing: why writes fail now, and the rows
    dropped so far (each part led by ", "; empty while all is well)."""
    parts = []
    if recorder.write_error:
        parts.append(f"writes failing ({recorder.write_error}), {recorder.pending} waiting")
    if recorder.dropped:
        parts.append(f"{recorder.dropped} dropped")
    return "".join(", " + part for part in parts)


def recovery_notes(recorder: _Buffered) -> list[str]:
    """What a dataset recorder found of crashed recorders at start, for the user."""
    notes = []
    if getattr(recorder, "recovered", 0):
        notes.append(f"recovered {recorder.recovered} events from the journal of a recorder that did not stop cleanly")
    notes += getattr(recorder, "unrecovered", [])
    return notes


def open_recorder(output: str, **kwargs) -> _Buffered:
    """A single file for ``*.parquet``; otherwise a crash-safe dataset directory.

    ``allow_untrusted_dir``: write even where other users could replace what is
    written (see ``_judge``)."""
    if output.endswith(".parquet"):
        return ParquetRecorder(output, **kwargs)
    return DatasetRecorder(output, **kwargs)
