"""The single-file layout (``record -o FILE.parquet``): :class:`ParquetRecorder`.

Row groups are appended to a temporary file beside ``FILE.parquet``, its footer
written on close, then renamed over ``FILE.parquet``: the file appears complete,
at once, after a clean stop (SIGINT/SIGTERM), and nothing of it before. A crash
loses the whole file: for a recorder left running, the dataset layout
(:mod:`runctrace.store.dataset`) is the one that survives it. Bytes the disk
refuses wait in :class:`_Spool` until it takes them.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

import pyarrow.parquet as pq

from runctrace.errors import RecordingError
from runctrace.store import parquet
from runctrace.store.buffer import BufferedRecorder
from runctrace.store.schema import SCHEMA
from runctrace.store.trust import create_file, kind, open_trusted_dir, temp_name, unlink_quietly, why



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


class ParquetRecorder(BufferedRecorder):
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
            self._dir_fd, _ = open_trusted_dir(os.path.dirname(path) or ".", path, create=False, follow=True,
                                               allow_untrusted=allow_untrusted_dir)
        except OSError as err:
            raise RecordingError(f"cannot write {path}: {why(err)}") from err
        try:
            try:
                st = os.stat(self.name, dir_fd=self._dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise RecordingError(
                        f"cannot write {path}: it exists and is {kind(st.st_mode)}; the recorder replaces "
                        "only a regular file, and never follows a symlink")
            except FileNotFoundError:
                pass
            self._tmp = temp_name(self.name)
            self._fd = create_file(self._tmp, self._dir_fd)
        except OSError as err:
            os.close(self._dir_fd)
            raise RecordingError(f"cannot write {path}: {why(err)}") from err
        except BaseException:
            os.close(self._dir_fd)
            raise
        self._spool = _Spool(self._fd)
        self._writer = pq.ParquetWriter(self._spool, SCHEMA, **parquet.FLUSH_OPTIONS)

    def _write_rows(self, rows: list[dict], sizes: list[int]) -> None:
        # from here on the rows are the writer's: whatever the disk says, they wait in the spool
        for table in parquet.row_groups(rows, SCHEMA):
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
            unlink_quietly(self._tmp, self._dir_fd)
            raise RecordingError(
                f"cannot finish {self.path}: {why(err)}; its {self.rows_written + lost} events are lost"
            ) from err
        finally:
            os.close(self._fd)
            os.close(self._dir_fd)
        if lost:
            raise RecordingError(
                f"{self.path} is written without its last {lost} events: {self.write_error or 'unwritable'}")

