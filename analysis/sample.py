"""Hand-made events in the real recording schema, for tests, examples and notebooks.

Writing a test as "container A starts at t=0 and ends at t=5 with exit 1" should take
one line, and the result must be exactly what a recorder writes, so the analysis is
tested on real shapes: each row is made by the recorder's own
:func:`runctrace.store.schema.event_to_row` from a :class:`runctrace.events.ContainerEvent`
(enrichment included: manager, Kubernetes fields)::

    rows = [add("a", 0), remove("a", 5, exit_code=1, started=0)]
    table = sample.table(rows)             # pyarrow, in SCHEMA
    events = sample.frame(rows)            # pandas, as table.to_pandas() gives it
    sample.write_dataset(rows, "data/")    # the recorder's host=/date= layout

Times are seconds after :data:`BASE` (2026-01-01T00:00:00Z).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Iterable, Optional, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from runctrace.runc.enrich import manager_of
from runctrace.events import ContainerEvent, EventType
from runctrace.store.schema import DATASET_SCHEMA, SCHEMA, event_to_row

BASE_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
BASE = pd.Timestamp(BASE_NS, unit="ns", tz="UTC")


def kubernetes(namespace: str, pod: str, container: Optional[str] = None, image: Optional[str] = None,
               *, runtime: str = "containerd") -> list:
    """The annotations a CRI runtime puts in a container's spec (``container=None``: the pod sandbox)."""
    kind = "container" if container else "sandbox"
    if runtime == "cri-o":
        ann = {"io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.name": pod,
               "io.kubernetes.cri-o.ContainerType": kind, "io.container.manager": "cri-o"}
        if container:
            ann["io.kubernetes.container.name"] = container
        if image:
            ann["io.kubernetes.cri-o.ImageName"] = image
    else:
        ann = {"io.kubernetes.cri.sandbox-namespace": namespace, "io.kubernetes.cri.sandbox-name": pod,
               "io.kubernetes.cri.container-type": kind}
        if container:
            ann["io.kubernetes.cri.container-name"] = container
        if image:
            ann["io.kubernetes.cri.image-name"] = image
    return list(ann.items())


def _ns(t: float) -> int:
    return BASE_NS + int(round(t * 1e9))


def event(
    type: str, container_id: str, t: float, *, host: str = "node1", pid: Optional[int] = None,
    exit_code: Optional[int] = None, signal: Optional[int] = None, started: Optional[float] = None,
    runtime_root: Optional[str] = "/run/containerd/runc/k8s.io", args: Sequence[str] = ("sleep", "60"),
    hostname: Optional[str] = None, annotations: Optional[list] = None, caller: Optional[str] = None,
    manager: Optional[str] = "auto",
) -> dict:
    """One row of the recording schema, as the recorder would write it.

    ``started``: on a remove, when its add was (gives ``lifetime_ns``, as the
    recorder does). ``manager="auto"``: the recorder's own rule; ``None``: unknown.
    """
    config = {"process": {"args": list(args)}, "annotations": dict(annotations or [])}
    if hostname is not None:
        config["hostname"] = hostname
    ann = dict(annotations or [])
    ev = ContainerEvent(
        type=EventType(type), container_id=container_id, container_pid=pid, container_config=config,
        bundle=f"/run/bundles/{container_id}", time_ns=_ns(t), backend="fake", runtime="/usr/bin/runc",
        runtime_root=runtime_root,
        runtime_args=["runc", "--root", runtime_root or "/run/runc", "create", container_id],
        exit_code=exit_code, signal=signal, started_ns=_ns(started) if started is not None else None,
        manager=manager_of(runtime_root, caller, ann) if manager == "auto" else manager, caller=caller,
    )
    row = event_to_row(ev, host)
    if not annotations:
        row["annotations"] = None
    return row


def add(container_id: str, t: float, **kw) -> dict:
    return event("add", container_id, t, **kw)


def initial(container_id: str, t: float, **kw) -> dict:
    return event("initial", container_id, t, **kw)


def remove(container_id: str, t: float, **kw) -> dict:
    return event("remove", container_id, t, **kw)


def table(rows: Iterable[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def frame(rows: Iterable[dict]) -> pd.DataFrame:
    return table(rows).to_pandas()


def _metadata(host: Optional[str], stats: Optional[dict], extra: Optional[dict]) -> dict:
    meta = dict(SCHEMA.metadata)
    meta[b"runctrace.stats"] = json.dumps(stats or {}).encode()
    meta[b"runctrace.backend"] = b"fake"
    if host:
        meta[b"runctrace.host"] = host.encode()
    for k, v in (extra or {}).items():
        meta[k.encode() if isinstance(k, str) else k] = v.encode() if isinstance(v, str) else v
    return meta


def write_file(rows: Iterable[dict], path, *, stats: Optional[dict] = None, metadata: Optional[dict] = None) -> str:
    """One Parquet file, as ``runctrace record -o FILE.parquet`` writes it."""
    t = table(rows)
    hosts = t.column("host").unique().to_pylist()
    pq.write_table(t.replace_schema_metadata(_metadata(hosts[0] if len(hosts) == 1 else None, stats, metadata)),
                   os.fspath(path), compression="zstd")
    return os.fspath(path)


def write_dataset(rows: Iterable[dict], directory, *, stats: Optional[dict] = None,
                  metadata: Optional[dict] = None) -> list:
    """The recorder's dataset layout: ``host=<h>/date=<d>/part-<first ns>-0-<seq>.parquet``,
    ``host`` in the path only (:data:`runctrace.store.schema.DATASET_SCHEMA`)."""
    groups: dict = {}
    for row in rows:
        date = datetime.fromtimestamp(row["time_ns"] / 1e9, timezone.utc).strftime("%Y-%m-%d")
        groups.setdefault((row["host"], date), []).append(row)
    paths = []
    for seq, ((host, date), group) in enumerate(sorted(groups.items()), 1):
        d = os.path.join(os.fspath(directory), f"host={host}", f"date={date}")
        os.makedirs(d, exist_ok=True)
        t = table(group).drop_columns(["host"]).cast(DATASET_SCHEMA)
        path = os.path.join(d, f"part-{group[0]['time_ns']}-0-{seq:06d}.parquet")
        pq.write_table(t.replace_schema_metadata(_metadata(host, stats, metadata)), path, compression="zstd")
        paths.append(path)
    return paths
