"""The one Parquet schema of a runctrace recording, and the event -> row mapping.

Types are chosen so pandas/pyarrow, DuckDB and Spark read the files unchanged:
``time`` is a microsecond UTC timestamp (Spark rejects nanosecond timestamps) and
``time_ns`` keeps the exact nanoseconds as a plain int64; strings are UTF-8; the
annotations are a Parquet MAP. The full spec is kept as JSON text in ``config_json``
so nothing of it is lost, once per container (on its add or initial row); the typed
columns are the fields people filter on, within bounds (spec.MAX_FIELD_*). Text
that came from outside and is not valid UTF-8 is stored escaped (safetext), and
the row's ``escaped`` column names those columns.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Iterable

import pyarrow as pa

from runctrace import safetext
from runctrace.runc.enrich import k8s_fields, redact_env
from runctrace.events import FLAG_FIELDS_TRUNCATED, ContainerEvent, EventType
from runctrace.backends.base import log
from runctrace.safetext import printable
from runctrace.runc.spec import spec_fields

# 1: first release. 2: enrichment columns (manager ... is_sandbox), "initial" events.
# 3: runc_uid, config_sha256/uid/nlink, flags, escaped; config_json on adds only.
SCHEMA_VERSION = "3"

SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("time_ns", pa.int64(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("container_id", pa.string(), nullable=False),
        pa.field("container_pid", pa.int32()),
        pa.field("bundle", pa.string()),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("runtime", pa.string()),
        pa.field("runtime_root", pa.string()),
        pa.field("runtime_args", pa.list_(pa.string())),
        pa.field("host", pa.string(), nullable=False),
        pa.field("exit_code", pa.int32()),
        pa.field("signal", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("config_json", pa.string()),
        pa.field("hostname", pa.string()),
        pa.field("process_args", pa.list_(pa.string())),
        pa.field("cwd", pa.string()),
        pa.field("root_path", pa.string()),
        pa.field("annotations", pa.map_(pa.string(), pa.string())),
        # enrichment (enrich.py)
        pa.field("manager", pa.string()),
        pa.field("caller", pa.string()),
        pa.field("mntns", pa.int64()),
        pa.field("pidns", pa.int64()),
        pa.field("netns", pa.int64()),
        pa.field("cgroup", pa.string()),
        pa.field("lifetime_ns", pa.int64()),  # on removes: time_ns minus the add's time_ns
        pa.field("pod_name", pa.string()),
        pa.field("pod_namespace", pa.string()),
        pa.field("pod_uid", pa.string()),
        pa.field("container_name", pa.string()),
        pa.field("sandbox_id", pa.string()),
        pa.field("image_name", pa.string()),
        pa.field("is_sandbox", pa.bool_()),
        # where the spec came from, and who ran runc (runc.files.SpecFile, runc.tracker.Tracker)
        pa.field("runc_uid", pa.int64()),
        pa.field("config_sha256", pa.string()),
        pa.field("config_uid", pa.int64()),
        pa.field("config_nlink", pa.int64()),
        pa.field("flags", pa.list_(pa.string())),  # events.FLAG_*
        # the text columns whose values are stored escaped (safetext: not valid UTF-8)
        pa.field("escaped", pa.list_(pa.string())),
    ],
    metadata={b"runctrace.schema_version": SCHEMA_VERSION.encode()},
)

COLUMNS = SCHEMA.names

# Columns a dataset directory keeps in its paths (host=<name>/...), not in its files:
# Spark refuses a column that is in both.
PARTITION_COLUMNS = ("host",)
DATASET_SCHEMA = pa.schema(
    [f for f in SCHEMA if f.name not in PARTITION_COLUMNS], metadata=SCHEMA.metadata
)


# Columns whose text came from outside and may not be valid UTF-8 (paths, IDs,
# argv, error texts that quote them): stored through safetext. config_json is
# not among them: the spec parser accepts valid UTF-8 only.
_TEXT_COLUMNS = tuple(
    f.name for f in SCHEMA
    if f.name not in ("config_json", "escaped", "flags")
    and (pa.types.is_string(f.type) or pa.types.is_list(f.type) or pa.types.is_map(f.type))
)


def _spec_columns(event: ContainerEvent, keep_env: bool) -> tuple[str | None, dict[str, Any]]:
    """config_json (adds only: a spec is stored once per container) and the typed
    spec columns. On a remove, ``container_config`` is what the tracker kept of the
    spec (spec.trim_config): the typed columns come from it."""
    config = event.container_config
    fields = spec_fields(config, event.bundle)
    fields.update(k8s_fields(config.get("annotations") if isinstance(config, dict) else None))
    if config is None or event.type is EventType.REMOVE:
        return None, fields
    shown = config if keep_env else redact_env(config)
    return json.dumps(shown, separators=(",", ":"), ensure_ascii=False), fields


def _int32(value: Any) -> Any:
    """``value`` if an int32 column can hold it, else None: a number from outside
    (a forged state file) must not make the row unwritable, and with it the batch."""
    return value if value is None or -(1 << 31) <= value < 1 << 31 else None


def event_to_row(event: ContainerEvent, host: str | None = None, keep_env: bool = False) -> dict[str, Any]:
    """One Parquet row. Environment values in the spec are redacted unless ``keep_env``.

    Total: a spec that cannot be recorded (no parser foresaw it) leaves config_json
    and the typed spec columns empty and says why in ``error``; the row is written.
    """
    error = event.error
    try:
        config_json, fields = _spec_columns(event, keep_env)
    except Exception as err:  # (RecursionError, MemoryError...): the event still gets its row
        log.error("runctrace: cannot record the spec of %s: %r", printable(event.container_id), err)
        config_json, fields = None, spec_fields(None, None)
        fields.update(k8s_fields(None))
        error = "; ".join(e for e in (error, f"recording the spec failed: {err!r}") if e)
    flags = list(event.flags)
    if fields.pop("truncated") and FLAG_FIELDS_TRUNCATED not in flags:
        flags.append(FLAG_FIELDS_TRUNCATED)
    row = {
        "time": event.time_ns // 1000,
        "time_ns": event.time_ns,
        "type": event.type.value,
        "container_id": event.container_id,
        "container_pid": _int32(event.container_pid),
        "bundle": event.bundle,
        "backend": event.backend,
        "runtime": event.runtime,
        "runtime_root": event.runtime_root,
        "runtime_args": list(event.runtime_args) or None,
        "host": host or socket.gethostname(),
        "exit_code": _int32(event.exit_code),
        "signal": _int32(event.signal),
        "error": error,
        "config_json": config_json,
        "manager": event.manager,
        "caller": event.caller,
        "mntns": event.mntns,
        "pidns": event.pidns,
        "netns": event.netns,
        "cgroup": event.cgroup,
        "lifetime_ns": event.time_ns - event.started_ns if event.started_ns is not None else None,
        "runc_uid": event.runc_uid,
        "config_sha256": event.config_sha256,
        "config_uid": event.config_uid,
        "config_nlink": event.config_nlink,
        "flags": flags or None,
    }
    row.update(fields)
    row["escaped"] = safetext.store(row, _TEXT_COLUMNS)
    return row


_MAP_COLUMNS = tuple(f.name for f in SCHEMA if pa.types.is_map(f.type))


def row_from_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row of :func:`event_to_row` back from JSON (a recorder's journal): a MAP
    column's entries are (key, value) tuples, which JSON turned into lists."""
    for name in _MAP_COLUMNS:
        if isinstance(row.get(name), list):
            row[name] = [tuple(pair) for pair in row[name]]
    return row


def rows_to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema = SCHEMA) -> pa.Table:
    """Rows from :func:`event_to_row` as a table of ``schema`` (keys it lacks are left out)."""
    return pa.Table.from_pylist(list(rows), schema=schema)
