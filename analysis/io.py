"""Reading recordings: the only module of ``runctrace.analysis`` that touches files.

A *recording* is one or more Parquet files in the schema of :mod:`runctrace.schema`.
Accepted paths, mixed freely:

- a file (what ``runctrace record`` writes);
- a directory of Parquet files, searched recursively, read as one
  ``pyarrow.dataset``. Hive-style directories (``host=<name>/date=<YYYY-MM-DD>/``)
  are understood: ``--host`` and the time range prune whole directories before any
  file is opened;
- several of either, e.g. one per host.

What is pushed down to the Parquet reader, and what is not:

- time (``since``/``until``) and ``host`` are Arrow dataset filters: row groups whose
  statistics fall outside are skipped, and partition directories are pruned.
- namespace and image come from the ``annotations`` MAP column. Parquet keeps no
  usable statistics for map values and Arrow cannot push a predicate on a map key
  into the scan, so those filters run *right after* each batch is decoded, on the
  columns derived from the map; the map itself is then dropped so it never sits in
  memory whole.

Small reads are batched: a live recording writes one row group per second, so a
day of a quiet host is thousands of tiny row groups. Batches are gathered into
chunks of :data:`CHUNK_ROWS` before the derived columns are computed, so the cost
per row group is a list append, not a dozen Arrow calls.

Schema versions: the Arrow schema metadata key ``runctrace.schema_version`` says
which schema wrote a file (the current one is :data:`runctrace.schema.SCHEMA_VERSION`).
Files without the key (written before it existed) and files from a newer version are
read as long as they have the columns the analysis needs; what was assumed is
returned as notes (``Recordings.notes``). Columns a file lacks are read as nulls.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Union

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from runctrace.errors import RunctraceError
from runctrace.schema import SCHEMA, SCHEMA_VERSION

from . import fields

PathLike = Union[str, "os.PathLike[str]"]

VERSION_KEY = b"runctrace.schema_version"
SYNTHETIC_KEY = b"runctrace.synthetic"
STATS_KEY = b"runctrace.stats"
HOST_KEY = b"runctrace.host"
BACKEND_KEY = b"runctrace.backend"

REQUIRED = ("type", "container_id")  # plus one of time / time_ns
CHUNK_ROWS = 1 << 18

# What the churn analysis reads by default: small columns only (config_json is KiB
# per event), plus the derived ones. Ask for more with ``columns=``.
RAW_COLUMNS = (
    "time", "time_ns", "type", "container_id", "container_pid", "host",
    "runtime_root", "exit_code", "signal", "hostname",
)
DERIVED_COLUMNS = ("command",) + fields.DERIVED_FROM_ANNOTATIONS
FUTURE_COLUMNS = ("manager",)  # read when a newer recorder writes it
DEFAULT_COLUMNS = RAW_COLUMNS + DERIVED_COLUMNS

# Repeating strings become pandas categoricals: a tenth of the memory, faster groupby.
# Not hostname and pod: one value per pod, so a categorical saves little and pandas
# spends ~0.1 s per 400k categories checking they are unique.
_CATEGORICAL = {
    "type", "host", "backend", "runtime", "runtime_root", "cwd", "command",
    "manager", *(set(fields.DERIVED_FROM_ANNOTATIONS) - {"pod"}),
}
# Decoded through the Parquet dictionary even when returned as plain strings.
_READ_AS_DICTIONARY = _CATEGORICAL | {"hostname"}
_ALWAYS_SCANNED = ("time", "time_ns", "type", "container_id", "host")


@dataclass
class FileInfo:
    """What a file's footer says, read before any data."""

    path: str
    source: str  # the path given by the user that led to this file
    rows: int
    schema: pa.Schema
    schema_version: Optional[str]
    synthetic: bool
    host: Optional[str]
    backend: Optional[str]
    stats: dict = field(default_factory=dict)


def _read_footer(path: str, source: str) -> FileInfo:
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunctraceError(f"{path} is not a runctrace recording: not a Parquet file ({reason})") from err
    kv = dict(meta.metadata or {})
    kv.update(schema.metadata or {})
    names = set(schema.names)
    missing = [c for c in REQUIRED if c not in names]
    if not names & {"time", "time_ns"}:
        missing.append("time")
    if missing:
        raise RunctraceError(
            f"{path} is a Parquet file but not a runctrace recording: it has no column "
            f"{', '.join(missing)} (it has {', '.join(schema.names[:8])}{', ...' if len(names) > 8 else ''})"
        )
    try:
        stats = json.loads(kv.get(STATS_KEY, b"{}") or b"{}")
    except ValueError:
        stats = {}
    decode = lambda key: kv[key].decode("utf-8", "replace") if key in kv else None  # noqa: E731
    return FileInfo(
        path=path,
        source=source,
        rows=meta.num_rows,
        schema=schema.remove_metadata(),
        schema_version=decode(VERSION_KEY),
        synthetic=kv.get(SYNTHETIC_KEY, b"").lower() in (b"true", b"1", b"yes"),
        host=decode(HOST_KEY),
        backend=decode(BACKEND_KEY),
        stats=stats if isinstance(stats, dict) else {},
    )


def _parquet_files(directory: str) -> List[str]:
    """Every ``*.parquet`` under ``directory``, skipping hidden and ``_``-prefixed
    entries (Spark's ``_SUCCESS``, editors' ``.swp``), in a stable order."""
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        out.extend(
            os.path.join(root, f) for f in sorted(files)
            if f.endswith((".parquet", ".parq")) and not f.startswith((".", "_"))
        )
    return out


def _hive_keys(files: Sequence[str], base: str) -> List[str]:
    keys: List[str] = []
    for f in files:
        for part in os.path.relpath(os.path.dirname(f), base).split(os.sep):
            if "=" in part:
                k = part.split("=", 1)[0]
                if k not in keys:
                    keys.append(k)
    return keys


def _glob_regex(patterns: Sequence[str]) -> str:
    """Shell-style patterns (``nginx*``, ``kube-*``) as one anchored RE2 regex.

    Written by hand because ``fnmatch.translate`` emits ``\\Z``, which RE2 (Arrow's
    regex engine) does not know.
    """
    def one(p: str) -> str:
        return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in p)

    return "^(?:" + "|".join(one(p) for p in patterns) + ")$"


def _to_timestamp(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class Recordings:
    """One or more recordings, opened: footers read and checked, no data read yet.

    >>> rec = open_recordings(["node1.parquet", "fleet/"])
    >>> rec.files            # one row per file: host, rows, schema version, recorder stats
    >>> events = rec.events(since="2026-11-28T10:00Z", namespaces=["prod-*"])
    """

    def __init__(self, paths: Union[PathLike, Iterable[PathLike]]):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        self.notes: List[str] = []
        self._sources = []  # (source path, [files], hive base or None)
        todo = []
        for path in self.paths:
            if os.path.isdir(path):
                files = _parquet_files(path)
                if not files:
                    self.notes.append(f"{path}: no .parquet files in this directory")
                self._sources.append((path, files, path))
            elif os.path.exists(path):
                files = [path]
                self._sources.append((path, files, None))
            else:
                raise RunctraceError(f"{path}: no such file or directory")
            todo.extend((f, path) for f in files)
        with ThreadPoolExecutor(max_workers=8) as pool:
            self._infos = list(pool.map(lambda a: _read_footer(*a), todo))
        self._check_versions()

    def _check_versions(self) -> None:
        unversioned = [i.path for i in self._infos if i.schema_version is None]
        if unversioned:
            self.notes.append(
                f"{len(unversioned)} file(s) carry no schema version (written before runctrace "
                f"recorded one, e.g. {unversioned[0]}); read as version {SCHEMA_VERSION}, "
                "columns they lack are empty"
            )
        newer = sorted({i.schema_version for i in self._infos if i.schema_version and _newer(i.schema_version)})
        if newer:
            self.notes.append(
                f"some files were written by a newer runctrace (schema version {', '.join(newer)}; "
                f"this one reads version {SCHEMA_VERSION}): columns it does not know are ignored"
            )
        if any(i.synthetic for i in self._infos):
            self.notes.append("this dataset is SYNTHETIC (generated by bench/synth.py), not a real recording")

    # ------------------------------------------------------------------ footers

    @property
    def files(self) -> pd.DataFrame:
        """One row per file: path, host, rows, schema version, synthetic, and the
        recorder's own counters from the footer (adds, removes, lost, missed)."""
        rows = []
        for i in self._infos:
            s = i.stats
            rows.append({
                "path": i.path, "source": i.source, "host": i.host, "rows": i.rows,
                "schema_version": i.schema_version, "synthetic": i.synthetic, "backend": i.backend,
                **{k: s.get(k) for k in ("adds", "removes", "lost", "missed")},
            })
        cols = ["path", "source", "host", "rows", "schema_version", "synthetic", "backend",
                "adds", "removes", "lost", "missed"]
        return pd.DataFrame(rows, columns=cols)

    @property
    def rows(self) -> int:
        return sum(i.rows for i in self._infos)

    # ------------------------------------------------------------------ data

    def events(self, *, sort: bool = True, **filters) -> pd.DataFrame:
        """The events as a pandas DataFrame, one row each, filtered, with derived columns.

        Filters and ``columns`` as for :meth:`table`. ``sort``: by time; the churn
        functions do not need it, so ``runctrace report`` skips it.

        Repeating strings (type, host, runtime_root, image, ...) are categoricals;
        ``container_id`` is a string column; int32 columns are nullable ``Int32``.
        """
        df = to_pandas(self.table(**filters))
        if sort and len(df) and not df["time_ns"].is_monotonic_increasing:
            df = df.sort_values("time_ns", kind="stable", ignore_index=True)
        return df

    def table(
        self,
        *,
        since=None,
        until=None,
        hosts: Optional[Sequence[str]] = None,
        namespaces: Optional[Sequence[str]] = None,
        images: Optional[Sequence[str]] = None,
        columns: Optional[Sequence[str]] = None,
    ) -> pa.Table:
        """The events as an Arrow table (what :meth:`events` converts).

        ``since``/``until``: anything ``pandas.Timestamp`` reads; naive times are UTC;
        ``since`` is inclusive, ``until`` exclusive. ``hosts``: exact names.
        ``namespaces``/``images``: exact names or shell patterns (``nginx*``).
        ``columns``: which columns to return (default :data:`DEFAULT_COLUMNS`); any
        schema column (e.g. ``config_json``, ``annotations``) or derived column.
        """
        columns = list(DEFAULT_COLUMNS if columns is None else columns)
        for c in ("time", "time_ns", "type", "container_id", "host"):
            if c not in columns:
                columns.append(c)
        since = _to_timestamp(since) if since is not None else None
        until = _to_timestamp(until) if until is not None else None
        ns_regex = _glob_regex(namespaces) if namespaces else None
        img_regex = _glob_regex(images) if images else None
        out_schema = _output_schema(columns, self._infos)
        chunks: List[pa.Table] = []
        for source, files, base in self._sources:
            if not files:
                continue
            infos = [i for i in self._infos if i.source == source]
            chunks.extend(self._scan(files, base, infos, columns, out_schema, since, until, hosts, ns_regex, img_regex))
        return pa.concat_tables(chunks) if chunks else out_schema.empty_table()

    def _scan(self, files, base, infos, columns, out_schema, since, until, hosts, ns_regex, img_regex):
        schema = pa.unify_schemas([i.schema for i in infos], promote_options="permissive")
        partitioning = None
        if base is not None:
            keys = [k for k in _hive_keys(files, base) if k not in schema.names or pa.types.is_string(schema.field(k).type)]
            if keys:
                part_schema = pa.schema([pa.field(k, pa.string()) for k in keys])
                partitioning = ds.partitioning(part_schema, flavor="hive")
                schema = pa.unify_schemas([schema, pa.schema([f for f in part_schema if f.name not in schema.names])])
        schema, fmt = _dictionary_reads(schema, set(partitioning.schema.names) if partitioning else set())
        dataset = ds.dataset(files, schema=schema, format=fmt, partitioning=partitioning,
                             partition_base_dir=base if partitioning else None)
        names = set(schema.names)

        expr = None

        def both(e):
            nonlocal expr
            expr = e if expr is None else expr & e

        # Push the time range down on a column every file has; files that have only
        # the other one (pre-release layouts) are filtered after decoding instead.
        have = lambda c: all(c in i.schema.names for i in infos)  # noqa: E731
        time_col = "time" if have("time") else "time_ns" if have("time_ns") else None
        for bound, op in ((since, "ge"), (until, "lt")):
            if bound is None or time_col is None:
                continue
            if time_col == "time":
                value = pa.scalar(bound.to_pydatetime(), type=schema.field("time").type)
            else:
                value = pa.scalar(bound.value, type=pa.int64())
            f = ds.field(time_col)
            both(f >= value if op == "ge" else f < value)
            if "date" in names and pa.types.is_string(schema.field("date").type):
                # Partition pruning: a day directory outside the range is never opened.
                day = bound.strftime("%Y-%m-%d")
                both(ds.field("date") >= day if op == "ge" else ds.field("date") <= day)
        late_range = None if time_col else (since, until)
        if hosts:
            if "host" in names:
                both(ds.field("host").isin(list(hosts)))
            else:  # host only in the footer metadata
                keep = {i.path for i in infos if i.host in set(hosts)}
                files = [f for f in files if f in keep]
                if not files:
                    return []
                dataset = ds.dataset(files, schema=schema, format=fmt)

        wanted_raw = set(columns) | set(_ALWAYS_SCANNED)
        if set(columns) & {"command"}:
            wanted_raw.add("process_args")
        if set(columns) & set(fields.DERIVED_FROM_ANNOTATIONS) or ns_regex or img_regex:
            wanted_raw.add("annotations")
        scan_cols = [c for c in schema.names if c in wanted_raw]
        missing_host = "host" not in names
        host_of = {i.path: (i.host or "unknown") for i in infos}

        scanner = dataset.scanner(columns=scan_cols, filter=expr, batch_size=CHUNK_ROWS, use_threads=True)
        out, buffer, buffered = [], [], 0
        for tagged in scanner.scan_batches():
            batch = tagged.record_batch
            if batch.num_rows == 0:
                continue
            if missing_host:
                batch = batch.append_column("host", pa.array([host_of.get(tagged.fragment.path, "unknown")] * batch.num_rows))
            buffer.append(batch)
            buffered += batch.num_rows
            if buffered >= CHUNK_ROWS:
                out.append(_finish(pa.Table.from_batches(buffer), out_schema, ns_regex, img_regex, late_range))
                buffer, buffered = [], 0
        if buffer:
            out.append(_finish(pa.Table.from_batches(buffer), out_schema, ns_regex, img_regex, late_range))
        return [t for t in out if t.num_rows]


def _dictionary_reads(schema: pa.Schema, partition_keys: set):
    """Decode repeating strings as dictionaries straight from Parquet.

    The recorder's writer dictionary-encodes these columns in the file, so reading
    them as dictionaries skips materialising (then re-hashing) one string per row.
    The annotations map matters most: its keys repeat on every row and its values
    (namespaces, pod names, images) repeat a lot; the derived columns are then built
    from dictionary codes (:func:`runctrace.analysis.fields.annotation_arrays`).
    """
    dict_type = pa.dictionary(pa.int32(), pa.string())
    read_as_dict = []
    for name in sorted(_READ_AS_DICTIONARY):
        if name in schema.names and name not in partition_keys and schema.field(name).type == pa.string():
            read_as_dict.append(name)
            schema = schema.set(schema.get_field_index(name), schema.field(name).with_type(dict_type))
    if "annotations" in schema.names and schema.field("annotations").type == fields.MAP_TYPE:
        read_as_dict += ["annotations.key_value.key", "annotations.key_value.value"]
        i = schema.get_field_index("annotations")
        schema = schema.set(i, schema.field(i).with_type(pa.map_(dict_type, dict_type)))
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=read_as_dict))
    return schema, fmt


def _newer(version: str) -> bool:
    try:
        return int(version) > int(SCHEMA_VERSION)
    except ValueError:
        return True


def _output_schema(columns: Sequence[str], infos: Sequence[FileInfo]) -> pa.Schema:
    """The Arrow schema of what ``events()`` returns: known types, strings as dictionaries."""
    file_types = {}
    for i in infos:
        for f in i.schema:
            file_types.setdefault(f.name, f.type)
    out = []
    for name in columns:
        if name in SCHEMA.names:
            t = SCHEMA.field(name).type
        elif name in DERIVED_COLUMNS or name in FUTURE_COLUMNS:
            t = pa.string()
        elif name in file_types:
            t = file_types[name]
        else:
            raise RunctraceError(
                f"no column {name!r}: columns are {', '.join(SCHEMA.names)} and derived {', '.join(DERIVED_COLUMNS)}"
            )
        if name in _CATEGORICAL and pa.types.is_string(t):
            t = pa.dictionary(pa.int32(), pa.string())
        out.append(pa.field(name, t))
    if "manager" not in columns and any("manager" in i.schema.names for i in infos):
        out.append(pa.field("manager", pa.dictionary(pa.int32(), pa.string())))
    return pa.schema(out)


def _finish(table: pa.Table, out_schema: pa.Schema, ns_regex, img_regex, late_range=None) -> pa.Table:
    """One chunk of scanned rows -> output rows: derive, filter, conform types."""
    n = table.num_rows
    cols = {name: table.column(name) for name in table.column_names}
    # Older files may have only one of the two time columns.
    if "time" not in cols and "time_ns" in cols:
        cols["time"] = pc.cast(pc.divide(cols["time_ns"], 1000), pa.int64()).cast(SCHEMA.field("time").type)
    if "time_ns" not in cols and "time" in cols:
        cols["time_ns"] = pc.multiply(cols["time"].cast(pa.timestamp("us", "UTC")).cast(pa.int64()), 1000)
    if "process_args" in cols:
        cols["command"] = fields.joined_args(cols["process_args"])
    if "annotations" in cols:
        cols.update(fields.annotation_arrays(cols["annotations"]))
    mask = None
    if late_range is not None:
        lo, hi = late_range
        t = cols["time_ns"]
        for bound, fn in ((lo, pc.greater_equal), (hi, pc.less)):
            if bound is not None:
                m = pc.fill_null(fn(t, bound.value), False)
                mask = m if mask is None else pc.and_(mask, m)
    for regex, column in ((ns_regex, "namespace"), (img_regex, "image")):
        if regex is None:
            continue
        m = pc.fill_null(pc.match_substring_regex(cols.get(column, pa.nulls(n, pa.string())), regex), False)
        mask = m if mask is None else pc.and_(mask, m)
    arrays = []
    for f in out_schema:
        arr = cols.get(f.name)
        if arr is None:
            arrays.append(pa.nulls(n, f.type))
            continue
        if pa.types.is_dictionary(f.type):
            if not pa.types.is_dictionary(arr.type):
                # One chunk first: on a chunked array each chunk would get the
                # cumulative dictionary (quadratic in memory for unique-ish values).
                if isinstance(arr, pa.ChunkedArray):
                    arr = arr.combine_chunks()
                arr = pc.dictionary_encode(arr.cast(pa.string()))
            arr = arr.cast(f.type)
        elif arr.type != f.type:
            try:
                arr = arr.cast(f.type, safe=False)
            except pa.ArrowInvalid as err:
                raise RunctraceError(f"column {f.name} has type {arr.type}, which cannot be read as {f.type}") from err
        arrays.append(arr)
    out = pa.table(arrays, schema=out_schema)
    return out.filter(mask) if mask is not None else out


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An events table as pandas (frees the table's buffers as it goes: do not reuse it)."""
    return table.to_pandas(types_mapper=_types_mapper, split_blocks=True, self_destruct=True)


def _types_mapper(t: pa.DataType):
    # Nullable integers stay integers (an exit code of 1.0 helps nobody).
    if t == pa.int32():
        return pd.Int32Dtype()
    return None


def open_recordings(paths: Union[PathLike, Iterable[PathLike]]) -> Recordings:
    """Open files and/or directories as one recording (see :class:`Recordings`)."""
    return Recordings(paths)


def load_events(paths: Union[PathLike, Iterable[PathLike]], **filters) -> pd.DataFrame:
    """Events from recordings: ``open_recordings(paths).events(**filters)``."""
    return open_recordings(paths).events(**filters)


def write_events(table_or_frame, path: PathLike, *, metadata: Optional[dict] = None) -> None:
    """Write events in the recording schema (for tests, notebooks and the synthetic
    generator; the recorder itself writes through :mod:`runctrace.recording`)."""
    if isinstance(table_or_frame, pd.DataFrame):
        table = pa.Table.from_pandas(table_or_frame, schema=SCHEMA, preserve_index=False)
    else:
        table = table_or_frame.cast(SCHEMA)
    with pq.ParquetWriter(os.fspath(path), SCHEMA, compression="zstd") as w:
        w.write_table(table)
        if metadata:
            w.add_key_value_metadata({k: v for k, v in metadata.items()})


__all__ = [
    "DEFAULT_COLUMNS", "FileInfo", "Recordings", "load_events", "open_recordings", "write_events",
]
