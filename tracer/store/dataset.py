"""The dataset layout (``record -o DIR``, the default): :class:`DatasetRecorder`.

A hive-partitioned directory, ``DIR/host=<name>/date=<YYYY-MM-DD>/part-*.parquet``,
of small, complete Parquet files, for recorders left running for weeks. Rows go
to a journal (:mod:`runctrace.store.journal`) at every flush, and the journal's
rows become one Parquet file every ``file_interval``; the next recorder on the
directory writes a crashed one's journal as Parquet
(:mod:`runctrace.store.recovery`). The directory must be one no other user can
replace (:mod:`runctrace.store.trust`).
"""

from __future__ import annotations

import itertools
import os
import stat
import time
from datetime import datetime, timezone
from typing import Iterable, Optional

import pyarrow as pa

from runctrace.errors import RecordingError
from runctrace.store import compaction, parquet
from runctrace.store.buffer import MEMORY_BUDGET, BufferedRecorder
from runctrace.store.journal import Journal
from runctrace.store.parquet import DATE_PREFIX, HOST_PREFIX
from runctrace.store.recovery import Recovery, clean_leftovers
from runctrace.store.trust import (
    create_file, exists, judge, open_dir, open_trusted_dir, refuse_untrusted, temp_name, why,
)


class DatasetRecorder(BufferedRecorder):
    """A hive-partitioned directory of small, complete, crash-safe Parquet files.

    ``file_interval <= flush_interval`` writes Parquet at every flush and keeps no
    journal. ``recovered`` and ``unrecovered`` say what was found, at start, of
    recorders that crashed.
    """

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
            self._root_fd, chain = open_trusted_dir(directory, directory, create=True, follow=False,
                                                    allow_untrusted=allow_untrusted_dir)
            host_dir = HOST_PREFIX + self.host
            self._host_fd = open_dir(host_dir, self._root_fd)
            # the host directory holds the journals: judged like the directory itself
            host_chain = [*chain, (os.path.join(chain[-1][0], host_dir), os.fstat(self._host_fd))]
            refuse_untrusted(directory, judge(host_chain), allow_untrusted_dir)
            probe = temp_name("runctrace-probe")  # can files be made here at all?
            os.close(create_file(probe, self._host_fd))
            os.unlink(probe, dir_fd=self._host_fd)
        except OSError as err:
            self._close_dirs()
            raise RecordingError(f"cannot write {directory}: {why(err)}") from err
        except BaseException:
            self._close_dirs()
            raise
        self._compactions = itertools.count(1)  # numbers compacted files' names
        self.files_written = 0
        self._segment = 0  # names the journal, and the Parquet files it becomes
        self._journal: Optional[Journal] = None
        self._journaled: list[dict] = []  # the rows in the journal, for its Parquet file
        self._journaled_bytes = 0
        self._journaled_since = 0.0
        recovery = Recovery(self._host_fd, self._write_recovered)
        self.unrecovered = recovery.notes  # a note on each journal not simply recovered: kept, and named
        try:
            clean_leftovers(self._host_fd)
            recovery.run()
        except OSError as err:
            self._close_dirs()
            raise RecordingError(f"cannot recover earlier recordings in {directory}: {why(err)}") from err
        finally:
            self.recovered = recovery.recovered  # rows of crashed recorders' journals written at start

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
            fd = self._date_fds[date] = open_dir(DATE_PREFIX + date, self._host_fd)
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
            self._journal = Journal(self._host_fd, self._segment)
            self._segment = self._journal.segment  # the name it got
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
            name = parquet.part_name(date_rows[0]["time_ns"], pid, segment)
            if skip_existing and exists(name, dir_fd):
                continue  # written before a crash that came before the journal's removal
            self._write_file(dir_fd, parquet.row_groups(date_rows), name, meta)

    def _write_recovered(self, rows: list[dict], pid: int, segment: int, recorded: dict) -> None:
        """A crashed recorder's journal, as the files it would have written."""
        self._write_parts(rows, pid, segment, self._metadata(recorded), skip_existing=True)

    def _write_file(self, dir_fd: int, tables: Iterable[pa.Table], name: str, meta: dict,
                    options: Optional[dict] = None) -> str:
        parquet.write_file(dir_fd, tables, name, meta, options)
        self.files_written += 1
        return name

    def compact(self) -> int:
        """Merge each date partition's files of this host into one; returns files removed
        (see :mod:`runctrace.store.compaction`)."""
        self.flush(files=True)
        return compaction.compact(self._host_fd, self._date_fd, self._write_file, self._metadata(),
                                  self._compactions)

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
                    failed = f"cannot compact {self.directory}: {why(err)}; its files stay as they were"
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
