"""Hand-made events in the real recording schema, for tests, examples and notebooks.

Writing a test as "container A starts at t=0 and ends at t=5 with exit 1" should take
one line, and the result must be exactly what a recorder writes (the one schema,
:data:`runctrace.schema.SCHEMA`), so the analysis is tested on real shapes::

    rows = [add("a", 0), remove("a", 5, exit_code=1)]
    table = sample.table(rows)             # pyarrow, in SCHEMA
    events = sample.frame(rows)            # pandas, as table.to_pandas() gives it

Times are seconds after :data:`BASE` (2026-01-01T00:00:00Z).
"""

from __future__ import annotations

import json
from typing import Iterable, Optional, Sequence

import pandas as pd
import pyarrow as pa

from runctrace.schema import SCHEMA

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


def event(
    type: str, container_id: str, t: float, *, host: str = "node1", pid: Optional[int] = None,
    exit_code: Optional[int] = None, signal: Optional[int] = None,
    runtime_root: Optional[str] = "/run/containerd/runc/k8s.io", args: Sequence[str] = ("sleep", "60"),
    hostname: Optional[str] = None, annotations: Optional[list] = None, backend: str = "fake",
) -> dict:
    """One row of the recording schema."""
    ns = BASE_NS + int(round(t * 1e9))
    config = {"process": {"args": list(args)}, "hostname": hostname, "annotations": dict(annotations or [])}
    return {
        "time": ns // 1000, "time_ns": ns, "type": type, "container_id": container_id, "container_pid": pid,
        "bundle": f"/run/bundles/{container_id}", "backend": backend, "runtime": "/usr/bin/runc",
        "runtime_root": runtime_root, "runtime_args": ["runc", "--root", runtime_root or "/run/runc", "create", container_id],
        "host": host, "exit_code": exit_code, "signal": signal, "error": None,
        "config_json": json.dumps(config), "hostname": hostname, "process_args": list(args) if args else None,
        "cwd": "/", "root_path": f"/run/bundles/{container_id}/rootfs", "annotations": annotations,
    }


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
