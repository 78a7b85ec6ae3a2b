"""The one Parquet schema of a runctrace recording, and the event -> row mapping.

Types are chosen so pandas/pyarrow, DuckDB and Spark read the files unchanged:
``time`` is a microsecond UTC timestamp (Spark rejects nanosecond timestamps) and
``time_ns`` keeps the exact nanoseconds as a plain int64; strings are UTF-8; the
annotations are a Parquet MAP. The full spec is kept as JSON text in ``config_json``
so nothing of it is lost; the typed columns are the fields people filter on.
"""

from __future__ import annotations

import json
import socket
from collections import OrderedDict
from typing import Any, Iterable

import pyarrow as pa

from .events import ContainerEvent
from .enrich import k8s_fields, redact_env
from .spec import spec_fields

# 1: first release. 2: enrichment columns (manager ... is_sandbox), "initial" events.
SCHEMA_VERSION = "2"

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


class _SpecCache:
    """The add and the remove of a container share one parsed spec: serialise it once.

    Keyed by object identity; the object itself is kept so its id cannot be reused
    while cached. Bounded, oldest out first.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: "OrderedDict[tuple[int, bool], tuple[Any, str, dict[str, Any]]]" = OrderedDict()

    def get(self, config: Any, bundle: str | None, keep_env: bool) -> tuple[str | None, dict[str, Any]]:
        if config is None:
            return None, {**spec_fields(None, bundle), **k8s_fields(None)}
        key = (id(config), keep_env)
        hit = self._items.get(key)
        if hit is None or hit[0] is not config:
            shown = config if keep_env else redact_env(config)
            text = json.dumps(shown, separators=(",", ":"), ensure_ascii=False)
            fields = spec_fields(shown, bundle)
            fields.update(k8s_fields(shown.get("annotations")))
            hit = (config, text, fields)
            self._items[key] = hit
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return hit[1], hit[2]

    def forget(self, config: Any) -> None:
        for keep_env in (False, True):
            self._items.pop((id(config), keep_env), None)


_spec_cache = _SpecCache()


def event_to_row(event: ContainerEvent, host: str | None = None, keep_env: bool = False) -> dict[str, Any]:
    """One Parquet row. Environment values in the spec are redacted unless ``keep_env``."""
    config_json, fields = _spec_cache.get(event.container_config, event.bundle, keep_env)
    if event.type.value == "remove":
        _spec_cache.forget(event.container_config)
    row = {
        "time": event.time_ns // 1000,
        "time_ns": event.time_ns,
        "type": event.type.value,
        "container_id": event.container_id,
        "container_pid": event.container_pid,
        "bundle": event.bundle,
        "backend": event.backend,
        "runtime": event.runtime,
        "runtime_root": event.runtime_root,
        "runtime_args": list(event.runtime_args) or None,
        "host": host or socket.gethostname(),
        "exit_code": event.exit_code,
        "signal": event.signal,
        "error": event.error,
        "config_json": config_json,
        "manager": event.manager,
        "caller": event.caller,
        "mntns": event.mntns,
        "pidns": event.pidns,
        "netns": event.netns,
        "cgroup": event.cgroup,
        "lifetime_ns": event.time_ns - event.started_ns if event.started_ns is not None else None,
    }
    row.update(fields)
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
