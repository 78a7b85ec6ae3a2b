"""Write events to Parquet: the one place that writes recordings.

Rows are buffered and written as a row group every ``flush_interval`` seconds (or
every ``max_rows`` rows), so memory stays bounded however long the recording runs.
``close()`` writes the footer, with the notifier's counters (adds, removes, lost)
in the file's key-value metadata: a loss is never silent.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Optional

import pyarrow.parquet as pq

from .errors import RecordingError
from .events import ContainerEvent
from .schema import SCHEMA, event_to_row, rows_to_table


def default_output(host: Optional[str] = None) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"runctrace-{host or socket.gethostname()}-{stamp}.parquet"


class ParquetRecorder:
    def __init__(
        self, path: str, *, host: Optional[str] = None, flush_interval: float = 1.0, max_rows: int = 10_000,
        keep_env: bool = False,
    ) -> None:
        self.keep_env = keep_env
        self.path = path
        self.host = host or socket.gethostname()
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.rows_written = 0
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise RecordingError(f"cannot write {path}: directory {parent} does not exist")
        if os.path.isdir(path):
            raise RecordingError(f"cannot write {path}: it is a directory")
        try:
            self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        except OSError as err:
            raise RecordingError(f"cannot write {path}: {err.strerror or err}") from err

    def write(self, event: ContainerEvent) -> None:
        with self._lock:
            self._rows.append(event_to_row(event, self.host, self.keep_env))
            due = len(self._rows) >= self.max_rows or time.monotonic() - self._last_flush >= self.flush_interval
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            self._last_flush = time.monotonic()
            if not rows:
                return
            try:
                self._writer.write_table(rows_to_table(rows))
            except OSError as err:
                self._rows = rows + self._rows  # keep them for a retry
                raise RecordingError(f"cannot write {self.path}: {err.strerror or err}") from err
            self.rows_written += len(rows)

    def close(self, stats: Optional[dict] = None, backend: Optional[str] = None) -> None:
        try:
            self.flush()
        finally:
            meta = {"runctrace.stats": json.dumps(stats or {}), "runctrace.host": self.host}
            if backend:
                meta["runctrace.backend"] = backend
            try:
                self._writer.add_key_value_metadata(meta)
                self._writer.close()
            except OSError as err:
                raise RecordingError(f"cannot finish {self.path}: {err.strerror or err}") from err
