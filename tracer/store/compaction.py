"""Merging a dataset's small files (``record --compact``, ``DatasetRecorder.compact``).

A recorder writes a file a minute; readers pay per file opened. Compaction
merges each date partition's files into one ``compact-*.parquet`` (zstd: one
large file, read many times, is where a smaller file pays), which lists its
sources in its metadata (``COMPACTED_KEY``) and is renamed into place before
they are deleted. A crash in between leaves duplicates only until the next
recorder starts, which deletes the listed sources (:func:`drop_sources`, from
:func:`runctrace.store.recovery.clean_leftovers`); readers skip a listed source
meanwhile. A file that is not a regular file, is larger than ``MAX_PARQUET``, or
cannot be read as this schema is left out, and in place.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from runctrace.store.parquet import COMPACT_OPTIONS, COMPACTED_KEY, DATE_PREFIX
from runctrace.store.schema import DATASET_SCHEMA
from runctrace.store.trust import open_regular

COMPACT_PREFIX = "compact-"
# The largest Parquet file compaction reads (the whole partition is merged in memory).
MAX_PARQUET = 1 << 30

# Writes tables as one complete file: (directory fd, tables, name, metadata, options).
WriteFile = Callable[[int, list, str, dict, dict], str]


def compact_name(first_ns: int, pid: int, seq: int) -> str:
    return f"{COMPACT_PREFIX}{first_ns}-{pid}-{seq:06d}.parquet"


def compact(host_fd: int, date_fd: Callable[[str], int], write: WriteFile, metadata: dict,
            seq: Iterator[int]) -> int:
    """Merge each date partition's files in the host directory ``host_fd`` into one;
    returns how many files were removed.

    ``date_fd`` opens a date's partition; ``write`` writes the merged file, with
    ``metadata`` and the sources' names; ``seq`` numbers the merged files' names.
    """
    removed = 0
    for date_name in sorted(os.listdir(host_fd)):
        if not date_name.startswith(DATE_PREFIX):
            continue
        try:
            dfd = date_fd(date_name[len(DATE_PREFIX):])
        except OSError as err:
            if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            continue  # not a directory: nothing the recorder wrote
        sources, tables = [], []
        for name in sorted(n for n in os.listdir(dfd) if n.endswith(".parquet") and not n.startswith(".")):
            try:
                fd = open_regular(name, dfd, MAX_PARQUET)
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
        name = write(
            dfd, [merged], compact_name(merged["time_ns"][0].as_py(), os.getpid(), next(seq)),
            {**metadata, COMPACTED_KEY: json.dumps(sources).encode()}, COMPACT_OPTIONS,
        )
        removed += drop_sources(dfd, name)
    return removed


def drop_sources(dir_fd: int, compacted: str) -> int:
    """Delete the sources a compacted file lists; none if it cannot be read as one."""
    try:
        with open(open_regular(compacted, dir_fd, MAX_PARQUET), "rb") as f:
            meta = pq.read_metadata(f).metadata or {}
        sources = json.loads(meta.get(COMPACTED_KEY, b"[]"))
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
