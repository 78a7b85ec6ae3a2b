"""How the recorder writes Parquet: options, row groups, metadata, complete files.

Both layouts write through what is here, so that every file the recorder writes
is compressed the same way, holds row groups of bounded size, and carries the
same key-value metadata (the notifier's counters and the recorder's ``dropped``:
a loss is never silent). A dataset's file is named after its first row, its
writer's pid and segment (:func:`part_name`), and written whole under a
temporary name, then renamed into place (:func:`write_file`): a reader never
sees half of one.
"""

from __future__ import annotations

import io
import json
import os
from typing import Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from runctrace.events import ContainerEvent, EventType
from runctrace.store.schema import DATASET_SCHEMA, SCHEMA, event_to_row, rows_to_table
from runctrace.store.trust import create_file, temp_name, unlink_quietly

# How each flush's small file (or row group) is written. Snappy, not zstd: zstd sets
# up a compressor per column chunk, which made it 2.5x the CPU of snappy for a
# flush of ~80 rows (measured), for files 5% smaller. No min/max statistics for
# config_json: each spec's full text twice over, which nearly doubled a small file,
# and no reader prunes on it. compact() writes zstd: one large file, read many
# times, is where a smaller file pays.
FLUSH_OPTIONS = {
    "compression": "snappy",
    "write_statistics": [name for name in SCHEMA.names if name != "config_json"],
}
COMPACT_OPTIONS = {**FLUSH_OPTIONS, "compression": "zstd"}

# The key-value metadata of each file, besides the schema's own: the notifier's
# counters and the recorder's "dropped" (JSON), the host, the backend; and, in a
# compacted file, the names of the files it merged (JSON), deleted once it is in place.
STATS_KEY = b"runctrace.stats"
HOST_KEY = b"runctrace.host"
BACKEND_KEY = b"runctrace.backend"
COMPACTED_KEY = b"runctrace.compacted_from"

# A dataset's partitions, hive-style (``host=<name>/date=<YYYY-MM-DD>/``), so that
# pyarrow, DuckDB and Spark read the host and the date from the path.
HOST_PREFIX = "host="
DATE_PREFIX = "date="

# A file's rows are made Arrow tables and written this many bytes at a time, a row
# group each: a conversion holds several copies of what it converts (builders
# that grow by doubling, then the encoder's pages), so a large file converted at
# once would cost several times its size. Ordinary files are one row group still.
_ROW_GROUP_BYTES = 8 << 20
# What a row costs beyond its strings (the dict, ints, pointers): an estimate is
# enough, the budgets are not exact.
_ROW_OVERHEAD = 1024


def row_size(row: dict) -> int:
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


def row_groups(rows: list[dict], schema: pa.Schema = DATASET_SCHEMA) -> Iterator[pa.Table]:
    """``rows`` as tables of ``schema`` of about ``_ROW_GROUP_BYTES`` each, made one at a time."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        size_of_row = row_size(row)
        if i > start and size + size_of_row > _ROW_GROUP_BYTES:
            yield rows_to_table(rows[start:i], schema)
            start, size = i, 0
        size += size_of_row
    if start < len(rows):
        yield rows_to_table(rows[start:], schema)


def part_name(first_ns: int, pid: int, segment: int) -> str:
    """A dataset file's name: its first row's time, and the writer's pid and segment
    (a journal's, so that a file is written once whoever writes it)."""
    return f"part-{first_ns}-{pid}-{segment:06d}.parquet"


def file_metadata(host: str, recorded: dict) -> dict[bytes, bytes]:
    """A file's key-value metadata; ``recorded``: ``{"stats": {...}, "backend": name}``."""
    meta = dict(SCHEMA.metadata)
    meta[STATS_KEY] = json.dumps(recorded.get("stats") or {}).encode()
    meta[HOST_KEY] = host.encode()
    if recorded.get("backend"):
        meta[BACKEND_KEY] = str(recorded["backend"]).encode()
    return meta


def warm_up() -> None:
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
    pq.write_table(rows_to_table([event_to_row(sample, "h")]), io.BytesIO(), **FLUSH_OPTIONS)


def write_file(dir_fd: int, tables: Iterable[pa.Table], name: str, meta: dict,
               options: Optional[dict] = None) -> None:
    """Write ``tables`` as the complete dataset file ``name``, a row group each:
    under a temporary name, fsynced, renamed into place, the directory fsynced."""
    tmp = temp_name(name)
    fd = create_file(tmp, dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            # DATASET_SCHEMA has no host column (the partition path holds it)
            with pq.ParquetWriter(f, DATASET_SCHEMA.with_metadata(meta), **(options or FLUSH_OPTIONS)) as writer:
                for table in tables:
                    writer.write_table(table)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except BaseException:
        unlink_quietly(tmp, dir_fd)
        raise
