"""Rows between an event and the disk: buffering, budgets, and surviving a full disk.

:class:`BufferedRecorder` is what both layouts share: it turns events into rows,
holds them until a flush is due (``flush_interval``, ``max_rows``, or
``MEMORY_BUDGET`` bytes), and hands them to its subclass's ``_write_rows``. A
write that fails (a full disk, a quota, EIO) never stops the recorder: the rows
wait, up to ``BACKLOG_ROWS`` and ``BACKLOG_BYTES``, and the write is retried
with a growing delay; rows that come while that backlog is full are counted in
``dropped``, which every file's metadata carries. Every row that waited is
written exactly once.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Optional

from runctrace.events import ContainerEvent
from runctrace.store import parquet
from runctrace.store.schema import event_to_row
from runctrace.store.trust import why

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


class BufferedRecorder:
    """Row buffering, the flush schedule, and surviving failed writes: shared by both layouts.

    A subclass writes rows (``_write_rows``), and may have a second stage
    (``_files_due_in``, ``_files_full``, ``_write_files``): a dataset's journaled
    rows becoming Parquet files; a single file's row groups, given to the writer,
    reaching the disk. ``target`` names where it writes, for messages.
    """

    target = ""

    def __init__(self, host: Optional[str], flush_interval: float, max_rows: int, keep_env: bool) -> None:
        parquet.warm_up()
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
        self._sizes: list[int] = []  # parquet.row_size of each of _rows
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

    # ------------------------------------------------------- what a subclass does

    def _write_rows(self, rows: list[dict], sizes: list[int]) -> None:
        """Write ``rows`` (of these ``parquet.row_size``); OSError if they cannot be now."""
        raise NotImplementedError

    def _files_due_in(self) -> Optional[float]:
        """When the second stage is due (0: now), None if it has nothing to do."""
        return None

    def _files_full(self) -> bool:
        """Must the second stage be done before more rows are written?"""
        return False

    def _write_files(self) -> None:
        """Do the second stage; OSError if it cannot be done now."""

    # ---------------------------------------------------------------- buffering

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
            size = parquet.row_size(row)
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
                self.write_error = f"cannot write to {self.target}: {why(err)}"
                self._retry_delay = min(RETRY_MAX_S, self._retry_delay * 2 or RETRY_FIRST_S)
                self._retry_at = time.monotonic() + self._retry_delay
                return
            if tried:
                self.write_error, self._retry_delay, self._retry_at = None, 0.0, 0.0

    # ------------------------------------------------------------ what files say

    def _stats(self) -> dict:
        """The notifier's counters so far, and its backend: what each file's metadata says."""
        stats = self.stats_source() if self.stats_source is not None else self.stats
        return {"stats": {**stats, "dropped": self.dropped}, "backend": self.backend}

    def _metadata(self, recorded: Optional[dict] = None) -> dict[bytes, bytes]:
        """``recorded``: another recorder's :meth:`_stats` (a recovered journal's)."""
        return parquet.file_metadata(self.host, recorded if recorded is not None else self._stats())

    def _lost_at_close(self) -> int:
        """Rows that close could not write: counted as dropped, for the file's metadata."""
        lost = len(self._rows)
        self.dropped += lost
        self._rows, self._sizes, self._pending_bytes = [], [], 0
        return lost
