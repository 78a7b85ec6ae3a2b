"""Writing recordings to Parquet: the one place that writes them.

Two layouts, one schema (:mod:`~runctrace.store.schema`); :func:`open_recorder`
picks one from the output's name:

* **A dataset directory** (the default, ``record -o DIR``;
  :mod:`~runctrace.store.dataset`), for recorders left running for weeks. Every
  flush (1 s by default, only when there are events) appends the new rows to a
  journal and fdatasyncs it (:mod:`~runctrace.store.journal`): a ``kill -9``
  loses at most the last flush interval. Every ``file_interval`` (60 s by
  default), at ``max_rows``, at ``MEMORY_BUDGET`` bytes of rows and on close, the
  journal's rows become one complete Parquet file, fsynced and renamed into
  place, and the journal is deleted. So every Parquet file on disk is readable
  with no repair step, and the next recorder on the directory turns a crashed
  recorder's journal into its Parquet file before it starts
  (:mod:`~runctrace.store.recovery`). Why two steps: writing Parquet is the
  costliest thing the recorder does, most of it in pyarrow's code that goes cold
  between flushes, while a JSON append is a few pages; and a file a minute, not a
  second, is 60x fewer small files for readers to open. Files sit in hive-style
  partitions ``host=<name>/date=<YYYY-MM-DD>/``, so many hosts' recordings can
  share a tree; the ``host`` column lives in the path, not in the files (Spark
  refuses a column that is both). ``compact()`` merges a partition's small files
  (:mod:`~runctrace.store.compaction`).
* **A single file** (``record -o FILE.parquet``; :mod:`~runctrace.store.single`):
  written under a temporary name and renamed over ``FILE.parquet`` on close: the
  file appears complete, at once, after a clean stop, and nothing of it before.

Both buffer rows between flushes within a byte budget, and put the notifier's
counters and their own ``dropped`` in each file's metadata
(:mod:`~runctrace.store.parquet`): a loss is never silent.

**The recorder survives its disk** (:mod:`~runctrace.store.buffer`). A write that
fails (a full disk, a quota, EIO) does not stop it: rows wait in memory, up to a
bound, and the write is retried with a growing delay; rows that come while that
backlog is full are counted in ``dropped``. ``write_error`` says why writes
fail, until one succeeds. Every row that waited is written exactly once.

**Other users are hostile** (:mod:`~runctrace.store.trust`): the recorder runs as
root, and other local users can make files and links where it writes. Every file
it writes is one it created (O_EXCL|O_NOFOLLOW, mode 0600, an unpredictable
temporary name, then renamed); directories are 0700, never through a symlink. It
refuses a directory that another user owns or can write, after OpenSSH's
StrictModes, unless told ``allow_untrusted_dir``; and what it reads back must be
a regular file of bounded size, and a journal must be its own.
"""

from __future__ import annotations

from typing import Union

from runctrace.store.buffer import BufferedRecorder
from runctrace.store.dataset import DatasetRecorder
from runctrace.store.journal import JOURNAL_NAME
from runctrace.store.single import ParquetRecorder

DEFAULT_DATASET = "runctrace-data"

Recorder = Union[DatasetRecorder, ParquetRecorder]


def default_output() -> str:
    return DEFAULT_DATASET


def open_recorder(output: str, **kwargs) -> Recorder:
    """A single file for ``*.parquet``; otherwise a crash-safe dataset directory.

    ``allow_untrusted_dir``: write even where other users could replace what is
    written (see :func:`runctrace.store.trust.judge`)."""
    if output.endswith(".parquet"):
        return ParquetRecorder(output, **kwargs)
    return DatasetRecorder(output, **kwargs)


def write_status(recorder: BufferedRecorder) -> str:
    """What the status line adds about writing: why writes fail now, and the rows
    dropped so far (each part led by ", "; empty while all is well)."""
    parts = []
    if recorder.write_error:
        parts.append(f"writes failing ({recorder.write_error}), {recorder.pending} waiting")
    if recorder.dropped:
        parts.append(f"{recorder.dropped} dropped")
    return "".join(", " + part for part in parts)


def recovery_notes(recorder: BufferedRecorder) -> list[str]:
    """What a dataset recorder found of crashed recorders at start, for the user."""
    notes = []
    if getattr(recorder, "recovered", 0):
        notes.append(f"recovered {recorder.recovered} events from the journal of a recorder that did not stop cleanly")
    notes += getattr(recorder, "unrecovered", [])
    return notes


__all__ = [
    "DEFAULT_DATASET", "JOURNAL_NAME", "DatasetRecorder", "ParquetRecorder", "Recorder", "default_output",
    "open_recorder", "recovery_notes", "write_status",
]
