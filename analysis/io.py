"""Reading recordings: the events of the files :mod:`runctrace.analysis.scan` found.

With :mod:`~runctrace.analysis.scan`, the only modules of ``runctrace.analysis``
that touch files: scan finds, opens and checks them (and skips what is not a
regular file, or was merged by a compaction); this module reads their rows.

A *recording* is one or more Parquet files in the schema of :mod:`runctrace.store.schema`.
Accepted paths, mixed freely:

- a file (``runctrace record -o FILE.parquet``);
- a directory of Parquet files, searched recursively and read as one
  ``pyarrow.dataset``: the recorder's dataset layout
  ``DIR/host=<name>/date=<YYYY-MM-DD>/part-*.parquet`` (``host`` lives in the path
  only), or any other tree of recordings;
- several of either, e.g. one per host.

What is pushed down to the Parquet reader, and what is not:

- time (``since``/``until``) and ``host`` are Arrow dataset filters: row groups
  whose statistics fall outside are skipped, and ``host=``/``date=`` directories
  are pruned before any file in them is opened.
- namespace and image: for schema-version-2 files they are typed columns
  (``pod_namespace``, ``image_name``) and are pushed down too. Version-1 files
  only have them inside the ``annotations`` MAP column; Parquet keeps no usable
  statistics for map values and Arrow cannot push a predicate on a map key into the
  scan, so for those files the filter runs *right after* each chunk is decoded, on
  the columns derived from the map, and the map is then dropped so it never sits
  in memory whole.

Small reads are batched: a live recording writes one small file or row group per
second, so a day of a quiet host is thousands of tiny pieces. Batches are gathered
into chunks of :data:`CHUNK_ROWS` before anything is derived, so the cost per row
group is a list append, not a dozen Arrow calls.

Schema versions: the key ``runctrace.schema_version`` says which schema wrote a
file (the current one is :data:`runctrace.store.schema.SCHEMA_VERSION`). Version-1 files
lack the enrichment columns: they are read as nulls, and the Kubernetes fields are
derived from the annotations instead (:mod:`runctrace.analysis.fields`). Files
without the key (written before it existed) and files from a newer version are read
as long as they have the columns the analysis needs; what was assumed is returned
as notes (``Recordings.notes``).

Text that is not valid UTF-8 (a container ID, a path or an argument with odd bytes)
is stored escaped, and each such row names the escaped columns in ``escaped``
(:mod:`runctrace.safetext`). Arrow strings hold UTF-8 only, so :meth:`Recordings.table`
returns the stored form with that column; :meth:`Recordings.events` gives the
original strings, odd bytes as surrogate escapes (U+DC80..U+DCFF), in columns of
Python objects. Files written before the column have nothing escaped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runctrace.errors import RunctraceError
from runctrace.safetext import escape, is_clean, unescape
from runctrace.store.schema import SCHEMA

from . import fields, scan
from .scan import FileInfo, PathLike


ESCAPED = "escaped"  # list<string>: the row's columns stored in safetext's escaped form
# What is derived here from a stored column holds its escaped form too (an argv
# joined with spaces is the join of its escaped items), and is undone with it.
_DERIVED_FROM = {"process_args": ("command",), "annotations": (fields.ANNOTATED_MANAGER,)}
CHUNK_ROWS = 1 << 18
# How far the scanner reads ahead of the derivation. Arrow's defaults (16 batches,
# 4 files) keep more decoded batches in flight with no gain in speed here.
BATCH_READAHEAD = 4
FRAGMENT_READAHEAD = 1

# What the churn analysis reads by default: small columns only (config_json is KiB
# per event). Ask for more with ``columns=``.
RAW_COLUMNS = (
    "time", "time_ns", "type", "container_id", "container_pid", "host", "runtime_root",
    "exit_code", "signal", "hostname", "manager", "lifetime_ns", *fields.KUBERNETES_COLUMNS,
)
DERIVED_COLUMNS = ("command", fields.ANNOTATED_MANAGER)
DEFAULT_COLUMNS = RAW_COLUMNS + ("command",)

# Repeating strings become pandas categoricals: less memory, faster groupby.
# Not hostname and pod_name: one value per pod, so a categorical saves little, and
# pandas checks every category for uniqueness when it builds one.
_CATEGORICAL = {
    "type", "host", "backend", "runtime", "runtime_root", "cwd", "command", "manager", "caller",
    "pod_namespace", "container_name", "image_name", fields.ANNOTATED_MANAGER,
}
# Decoded through the Parquet dictionary even when returned as plain strings.
_READ_AS_DICTIONARY = _CATEGORICAL | {"hostname", "pod_name"}
_ALWAYS_SCANNED = ("time", "time_ns", "type", "container_id", "host")


COUNTERS = ("adds", "removes", "lost", "missed")
_SESSION_FILE = re.compile(r"^(?:part|compact)-\d+-(\d+)-\d+\.parquet$")


def _session(info: FileInfo) -> str:
    """Which recorder run wrote a file: host and recorder PID for the dataset layout
    (``part-<first ns>-<pid>-<seq>.parquet``); otherwise the file is its own run."""
    m = _SESSION_FILE.match(os.path.basename(info.path))
    host = info.host or os.path.dirname(info.path)
    return f"{host}:{m.group(1)}" if m else info.path


def _glob_regex(patterns: Sequence[str]) -> str:
    """Shell-style patterns (``nginx*``, ``kube-*``) as one anchored RE2 regex.

    Written by hand because ``fnmatch.translate`` emits ``\\Z``, which RE2 (Arrow's
    regex engine) does not know.
    """
    def one(p: str) -> str:
        return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in p)

    return "^(?:" + "|".join(one(p) for p in patterns) + ")$"


def _name_filter(column: str, patterns: Sequence[str]) -> ds.Expression:
    """Exact names as ``isin`` (row-group statistics can prune), patterns as a regex."""
    exact = [p for p in patterns if not any(ch in p for ch in "*?")]
    globs = [p for p in patterns if p not in exact]
    parts = []
    if exact:
        parts.append(ds.field(column).isin(exact))
    if globs:
        parts.append(pc.match_substring_regex(ds.field(column).cast(pa.string()), pattern=_glob_regex(globs)))
    expr = parts[0]
    for p in parts[1:]:
        expr = expr | p
    return expr


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
        found = scan.find(self.paths)
        self.notes: List[str] = found.notes
        self._infos = found.infos
        self._sources = found.sources
        self._files = found.files

    # ------------------------------------------------------------------ footers

    @property
    def files(self) -> pd.DataFrame:
        """One row per file: path, host, rows, schema version, synthetic, the
        recorder session that wrote it, and that recorder's counters from the footer
        (adds, removes, lost, missed) as they stood when the file was written."""
        rows = []
        for i in self._infos:
            s = i.stats
            rows.append({
                "path": i.path, "source": i.source, "host": i.host, "rows": i.rows,
                "schema_version": i.schema_version, "synthetic": i.synthetic, "backend": i.backend,
                "session": _session(i),
                **{k: s.get(k) for k in COUNTERS},
            })
        cols = ["path", "source", "host", "rows", "schema_version", "synthetic", "backend", "session", *COUNTERS]
        # Paths as objects: a file name may hold bytes that are not UTF-8 (surrogate
        # escapes), which pandas' Arrow-backed strings refuse.
        return pd.DataFrame({
            c: pd.Series([r[c] for r in rows], dtype=object if c in ("path", "source", "session") else None)
            for c in cols
        })

    def recorder_counters(self) -> dict:
        """The recorders' own counters over the whole dataset (None if no file has them).

        A recorder writes its counters *so far* into every file it flushes, so per
        recorder session the latest (largest) value is the total; sessions are then
        added up. Adding every file's counters instead would count a loss once per
        file written after it.
        """
        files = self.files
        out = {}
        for k in COUNTERS:
            values = pd.to_numeric(files[k], errors="coerce")
            out[k] = None if values.isna().all() else int(values.groupby(files["session"]).max().fillna(0).sum())
        return out

    @property
    def rows(self) -> int:
        return sum(i.rows for i in self._infos)

    # ------------------------------------------------------------------ data

    def events(self, *, sort: bool = True, **filters) -> pd.DataFrame:
        """The events as a pandas DataFrame, one row each, filtered.

        Filters and ``columns`` as for :meth:`table`. ``sort``: by time; the churn
        functions do not need it, so ``runctrace report`` skips it.

        Repeating strings (type, host, runtime_root, image_name, ...) are
        categoricals; ``container_id``, ``hostname`` and ``pod_name`` are strings;
        int32 columns are nullable ``Int32``, ``is_sandbox`` nullable ``boolean``.
        Text stored escaped is given back as it was: a column holding bytes that
        were not UTF-8 is one of Python objects (see the module doc).
        """
        table = self.table(**filters)
        rows, names = _escaped_rows(table)
        if ESCAPED in table.column_names and ESCAPED not in (filters.get("columns") or ()):
            table = table.drop_columns([ESCAPED])
        df = to_pandas(table)
        if len(rows):
            _unescape_rows(df, rows, names)
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
        ``namespaces``/``images``: exact names or shell patterns (``nginx*``),
        matched against ``pod_namespace`` / ``image_name``.
        ``columns``: which columns to return (default :data:`DEFAULT_COLUMNS`); any
        schema column (e.g. ``config_json``, ``annotations``) or ``command``.

        Values stay in their stored form: where a row's ``escaped`` column names a
        column, that value is escaped (:mod:`runctrace.safetext`), as Arrow strings
        cannot hold bytes that are not UTF-8. ``escaped`` is returned whenever a file
        has it; :meth:`events` undoes the escaping.
        """
        columns = list(DEFAULT_COLUMNS if columns is None else columns)
        for c in _ALWAYS_SCANNED:
            if c not in columns:
                columns.append(c)
        if ESCAPED not in columns and any(ESCAPED in i.schema.names for i in self._infos):
            columns.append(ESCAPED)
        if not all(i.enriched for i in self._infos) and fields.ANNOTATED_MANAGER not in columns:
            columns.append(fields.ANNOTATED_MANAGER)  # version-1 files: see fields.with_manager
        since = _to_timestamp(since) if since is not None else None
        until = _to_timestamp(until) if until is not None else None
        out_schema = _output_schema(columns, self._infos)
        chunks: List[pa.Table] = []
        for source, files, base in self._sources:
            if not files:
                continue
            infos = [i for i in self._infos if i.source == source]
            chunks.extend(self._read_source(source, files, base, infos, columns, out_schema, since, until, hosts, namespaces, images))
        return pa.concat_tables(chunks) if chunks else out_schema.empty_table()

    def _dataset(self, files, schema, fmt, partitioning, base) -> ds.Dataset:
        """The files as one Arrow dataset read through :class:`~runctrace.analysis.scan.CheckedFiles`;
        ``host=``/``date=`` values parsed from each path, as ``ds.dataset(partitioning=...)`` does."""
        fs = pafs.PyFileSystem(self._files)
        fragments = []
        for f in files:
            where = partitioning.parse(escape(os.path.relpath(f, base))) if partitioning is not None else None
            fragments.append(fmt.make_fragment(self._files.key(f), filesystem=fs, partition_expression=where))
        return ds.FileSystemDataset(fragments, schema, fmt, filesystem=fs)

    def _read_source(self, source, files, base, infos, columns, out_schema, since, until, hosts, namespaces, images):
        """The rows of one path the user gave (a file, or a directory's files), as
        chunks of the output schema."""
        schema, partitioning = _source_schema(infos, files, base)
        enriched = all(i.enriched for i in infos)
        schema, fmt = _dictionary_reads(schema, set(partitioning.schema.names) if partitioning else set(), enriched)
        if hosts and "host" not in schema.names:  # host only in the footer metadata
            keep = {i.path for i in infos if i.host in set(hosts)}
            files = [f for f in files if f in keep]
            if not files:
                return []
        push = _pushdown(schema, infos, enriched, since, until, hosts, namespaces, images)
        scanner = self._dataset(files, schema, fmt, partitioning, base).scanner(
            columns=_scan_columns(schema, columns, enriched, push.late_names), filter=push.expr,
            batch_size=CHUNK_ROWS, use_threads=True,
            batch_readahead=BATCH_READAHEAD, fragment_readahead=FRAGMENT_READAHEAD,
        )
        host_of = None
        if "host" not in schema.names:
            host_of = {self._files.key(i.path): (i.host or "unknown") for i in infos}  # by fragment path
        return _gather(scanner, source, out_schema, push, host_of)


def _source_schema(infos: Sequence[FileInfo], files: Sequence[str], base: Optional[str]):
    """``(schema, partitioning)`` of one source's files: their schemas unified, and
    the hive keys of a directory's paths (``host=``, ``date=``) as string columns."""
    schema = pa.unify_schemas([i.schema for i in infos], promote_options="permissive")
    partitioning = None
    if base is not None:
        keys = [k for k in scan.hive_keys(files, base) if k not in schema.names or pa.types.is_string(schema.field(k).type)]
        if keys:
            part_schema = pa.schema([pa.field(k, pa.string()) for k in keys])
            partitioning = ds.partitioning(part_schema, flavor="hive")
            schema = pa.unify_schemas([schema, pa.schema([f for f in part_schema if f.name not in schema.names])])
    return schema, partitioning


@dataclass
class _Pushdown:
    """The filters of one read: what Arrow applies in the scan (``expr``), and what
    :func:`_finish` applies after decoding, where Arrow cannot."""

    expr: Optional[ds.Expression] = None
    late_range: Optional[tuple] = None  # (since, until) on time_ns
    late_names: dict = field(default_factory=dict)  # column -> regex

    def add(self, e: ds.Expression) -> None:
        self.expr = e if self.expr is None else self.expr & e


def _pushdown(schema, infos, enriched, since, until, hosts, namespaces, images) -> _Pushdown:
    push = _Pushdown()
    names = set(schema.names)
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
        push.add(f >= value if op == "ge" else f < value)
        if "date" in names and pa.types.is_string(schema.field("date").type):
            # Partition pruning: a day directory outside the range is never opened.
            day = bound.strftime("%Y-%m-%d")
            push.add(ds.field("date") >= day if op == "ge" else ds.field("date") <= day)
    push.late_range = None if time_col else (since, until)
    if hosts and "host" in names:  # (else the files were chosen by their footers)
        push.add(ds.field("host").isin(list(hosts)))
    # Namespace and image: typed columns in version-2 files, pushed down. In
    # version-1 files they exist only inside the annotations map, which Arrow
    # cannot filter in the scan: _finish filters right after deriving them.
    for column, patterns in (("pod_namespace", namespaces), ("image_name", images)):
        if not patterns:
            continue
        if enriched:
            push.add(_name_filter(column, patterns))
        else:
            push.late_names[column] = _glob_regex(patterns)
    return push


def _scan_columns(schema: pa.Schema, columns: Sequence[str], enriched: bool, late_names: dict) -> List[str]:
    """The stored columns to read for ``columns``: derived ones need their sources."""
    wanted_raw = set(columns) | set(_ALWAYS_SCANNED)
    if "command" in columns:
        wanted_raw.add("process_args")
    if not enriched and (set(columns) & set(fields.DERIVED_FROM_ANNOTATIONS) or late_names):
        wanted_raw.add("annotations")
    return [c for c in schema.names if c in wanted_raw]


def _gather(scanner: ds.Scanner, source: str, out_schema: pa.Schema, push: _Pushdown, host_of) -> List[pa.Table]:
    """The scanned batches, gathered into chunks of :data:`CHUNK_ROWS` and finished.

    A big batch (a large row group) goes alone, so its dictionaries need no
    unifying with others. ``host_of``: the host of each fragment, for files that
    have it in their footer only.
    """
    out, buffer = [], []
    buffered = 0

    def flush():
        nonlocal buffer, buffered
        if buffer:
            out.append(_finish(buffer, out_schema, push.late_names, push.late_range))
        buffer, buffered = [], 0

    try:  # a file can be damaged past its footer, or replaced since it was read
        for tagged in scanner.scan_batches():
            batch = tagged.record_batch
            if batch.num_rows == 0:
                continue
            if host_of is not None:
                batch = batch.append_column("host", pa.array([host_of.get(tagged.fragment.path, "unknown")] * batch.num_rows))
            if batch.num_rows >= CHUNK_ROWS // 8:
                flush()
                buffer, buffered = [batch], batch.num_rows
                flush()
                continue
            buffer.append(batch)
            buffered += batch.num_rows
            if buffered >= CHUNK_ROWS:
                flush()
    except (pa.ArrowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunctraceError(f"reading {source}: {reason}") from err
    flush()
    return [t for t in out if t.num_rows]


def _dictionary_reads(schema: pa.Schema, partition_keys: set, enriched: bool):
    """Decode repeating strings as dictionaries straight from Parquet.

    The writer dictionary-encodes these columns in the file, so reading them as
    dictionaries skips materialising (then re-hashing) one string per row. For
    version-1 files the annotations map matters most: its keys repeat on every row
    and its values (namespaces, pod names, images) repeat a lot; the derived
    columns are then built from dictionary codes
    (:func:`runctrace.analysis.fields.annotation_arrays`).
    """
    read_as_dict = []
    for name in sorted(_READ_AS_DICTIONARY):
        if name in schema.names and name not in partition_keys and schema.field(name).type == pa.string():
            read_as_dict.append(name)
            schema = schema.set(schema.get_field_index(name), schema.field(name).with_type(fields.DICT_TYPE))
    if not enriched and "annotations" in schema.names and schema.field("annotations").type == fields.MAP_TYPE:
        read_as_dict += ["annotations.key_value.key", "annotations.key_value.value"]
        i = schema.get_field_index("annotations")
        schema = schema.set(i, schema.field(i).with_type(pa.map_(fields.DICT_TYPE, fields.DICT_TYPE)))
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=read_as_dict))
    return schema, fmt


def _output_schema(columns: Sequence[str], infos: Sequence[FileInfo]) -> pa.Schema:
    """The Arrow schema of what ``table()`` returns: known types, repeating strings
    as dictionaries (pandas categoricals)."""
    file_types = {}
    for i in infos:
        for f in i.schema:
            file_types.setdefault(f.name, f.type)
    out = []
    for name in columns:
        if name in SCHEMA.names:
            t = SCHEMA.field(name).type
        elif name in DERIVED_COLUMNS:
            t = pa.string()
        elif name == ESCAPED:  # (known before the schema that records it)
            t = pa.list_(pa.string())
        elif name in file_types:
            t = file_types[name]
        else:
            raise RunctraceError(
                f"no column {name!r}: columns are {', '.join(SCHEMA.names)} and command"
            )
        if name in _CATEGORICAL and pa.types.is_string(t):
            t = fields.DICT_TYPE
        out.append(pa.field(name, t))
    return pa.schema(out)


def _finish(batches: List[pa.RecordBatch], out_schema: pa.Schema, late_names=None, late_range=None) -> pa.Table:
    """Scanned batches -> output rows: derive, filter, conform types.

    Several (small) batches are first made one Arrow chunk per column: concatenation
    unifies their dictionaries, so what follows runs once per :data:`CHUNK_ROWS`
    rows however small the row groups are (a live recording writes one a second).
    """
    table = pa.Table.from_batches(batches)
    if len(batches) > 1:
        table = table.combine_chunks()
    n = table.num_rows
    cols = {name: table.column(name) for name in table.column_names}
    # Older files may have only one of the two time columns.
    if "time" not in cols and "time_ns" in cols:
        cols["time"] = pc.cast(pc.divide(cols["time_ns"], 1000), pa.int64()).cast(SCHEMA.field("time").type)
    if "time_ns" not in cols and "time" in cols:
        cols["time_ns"] = pc.multiply(cols["time"].cast(pa.timestamp("us", "UTC")).cast(pa.int64()), 1000)
    if "process_args" in cols:
        cols["command"] = fields.joined_args(cols["process_args"])
    if "annotations" in cols:  # version-1 rows: derive what version 2 records
        for name, derived in fields.annotation_arrays(cols["annotations"]).items():
            typed = cols.get(name)
            if typed is None or typed.null_count == len(typed):
                cols[name] = derived
            elif typed.null_count:
                target = pa.bool_() if name == "is_sandbox" else pa.string()
                cols[name] = pc.coalesce(typed.cast(target), derived.cast(target))
    mask = None

    def narrow(m):
        nonlocal mask
        m = pc.fill_null(m, False)
        mask = m if mask is None else pc.and_(mask, m)

    if late_range is not None:
        lo, hi = late_range
        if lo is not None:
            narrow(pc.greater_equal(cols["time_ns"], lo.value))
        if hi is not None:
            narrow(pc.less(cols["time_ns"], hi.value))
    for column, regex in (late_names or {}).items():
        narrow(pc.match_substring_regex(cols.get(column, pa.nulls(n, pa.string())).cast(pa.string()), regex))
    arrays = []
    for f in out_schema:
        arr = cols.get(f.name)
        if arr is None:
            arrays.append(pa.nulls(n, f.type))
            continue
        if pa.types.is_dictionary(f.type):
            if not pa.types.is_dictionary(arr.type):
                # One chunk at a time: on a many-chunk array each chunk would get
                # the cumulative dictionary (quadratic for unique-ish values).
                arr = pc.dictionary_encode(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
            arr = arr.cast(f.type)
        elif arr.type != f.type:
            try:
                arr = arr.cast(f.type, safe=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise RunctraceError(f"column {f.name} has type {arr.type}, which cannot be read as {f.type}") from err
        arrays.append(arr)
    out = pa.table(arrays, schema=out_schema)
    return out.filter(mask) if mask is not None else out


def _escaped_rows(table: pa.Table):
    """Where ``table`` holds escaped values: row positions, and the columns each names.

    Such rows are rare (odd bytes in an ID, a path or an argument), so the common
    case costs one look at the column's null count.
    """
    if ESCAPED not in table.column_names:
        return np.empty(0, np.int64), []
    col = table.column(ESCAPED)
    if col.null_count == len(col):
        return np.empty(0, np.int64), []
    rows = pc.indices_nonzero(pc.is_valid(col)).to_numpy()
    return rows, col.take(rows).to_pylist()


def _unescape_rows(df: pd.DataFrame, rows, names) -> None:
    """Undo the stored escaping in place, at ``rows``, in the columns ``names`` lists
    for each (and what was derived from them).

    Only text columns are touched, whatever a file's ``escaped`` says. A column that
    gets a string with surrogate escapes becomes one of Python objects (see
    :func:`_with_values`); the others keep their type.
    """
    text = {c for c in df.columns if c != ESCAPED and (
        df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype) or isinstance(df[c].dtype, pd.CategoricalDtype))}
    where = {}  # column -> row positions
    for row, listed in zip(rows, names):
        if not isinstance(listed, list):
            continue
        for name in listed:
            for column in (name, *_DERIVED_FROM.get(name, ())):
                if column in text:
                    where.setdefault(column, set()).add(int(row))
    for column, positions in where.items():
        positions = np.fromiter(sorted(positions), np.int64)
        series = df[column]
        values = [_unescaped(series.iat[p]) for p in positions]
        df[column] = _with_values(series, positions, values)


def _unescaped(value):
    if isinstance(value, str):
        return unescape(value)
    if isinstance(value, (list, tuple, np.ndarray)):  # argv; a map's (key, value) pairs
        out = [_unescaped(v) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    return value


def _clean(value) -> bool:
    if isinstance(value, str):
        return is_clean(value)
    if isinstance(value, (list, tuple)):
        return all(_clean(v) for v in value)
    return True


def _with_values(series: pd.Series, positions: np.ndarray, values: list) -> pd.Series:
    """``series`` with ``values`` put at ``positions``; its type kept if it can hold them.

    Neither pandas' strings (Arrow, UTF-8 only) nor its categoricals (which hash
    their categories as UTF-8) can hold a surrogate escape: a column given one
    becomes a column of Python objects.
    """
    clean = all(_clean(v) for v in values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        if clean:
            # An Index, not a list: pandas would infer the type of a list again.
            wanted = pd.Index(list(dict.fromkeys(v for v in values if v is not None)), dtype=categories.dtype)
            new = wanted[categories.get_indexer(wanted) < 0]
            if len(new):
                series = series.cat.add_categories(new)
            out = series.copy()
            out.iloc[positions] = values
            return out
        # Each row points at its category's one string object: no copy per row.
        lookup = np.append(np.asarray(categories, dtype=object), None)
        out = lookup[series.cat.codes.to_numpy()]  # code -1 (missing) -> the None at the end
    else:
        out = series.to_numpy(dtype=object, copy=True)
    for p, v in zip(positions, values):  # one by one: a value may itself be a list
        out[p] = v
    keep = clean and not isinstance(series.dtype, pd.CategoricalDtype)
    return pd.Series(out, index=series.index, name=series.name, dtype=series.dtype if keep else object)


_OFFSET_LIMIT = (1 << 31) - 1


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An events table as pandas (frees the table's buffers as it goes: do not reuse it).

    String columns are handed over as one chunk each: pandas keeps Arrow's chunking,
    and both ``factorize`` (a dictionary per chunk, each holding all values seen so
    far) and ``take`` with random indices slow down with the number of chunks. A
    column too big for 32-bit offsets becomes ``large_string``.
    """
    arrays = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) and col.num_chunks > 1:
            if col.nbytes > _OFFSET_LIMIT:
                col = col.cast(pa.large_string())
            col = pa.chunked_array([col.combine_chunks()])
        arrays.append(col)
    table = pa.table(arrays, names=table.column_names)
    return table.to_pandas(types_mapper=_types_mapper, split_blocks=True, self_destruct=True)


def _types_mapper(t: pa.DataType):
    # Nullable integers stay integers (an exit code of 1.0 helps nobody); a bool
    # column with nulls stays bool (not object).
    if t == pa.int32():
        return pd.Int32Dtype()
    if t == pa.bool_():
        return pd.BooleanDtype()
    return None


def open_recordings(paths: Union[PathLike, Iterable[PathLike]]) -> Recordings:
    """Open files and/or directories as one recording (see :class:`Recordings`)."""
    return Recordings(paths)


def load_events(paths: Union[PathLike, Iterable[PathLike]], **filters) -> pd.DataFrame:
    """Events from recordings: ``open_recordings(paths).events(**filters)``."""
    return open_recordings(paths).events(**filters)


__all__ = ["DEFAULT_COLUMNS", "FileInfo", "Recordings", "load_events", "open_recordings", "to_pandas"]
