"""SYNTHETIC runctrace recordings, for benchmarks and tests only. Not real data.

Every file written here says so in its footer (``runctrace.synthetic = true``, and
``runctrace.backend = synthetic``), and ``runctrace report`` prints a warning when
it reads one. Files use the real schema (:data:`runctrace.store.schema.SCHEMA`), one file
per host, in the recorder's dataset layout:
``OUT/host=<name>/date=<YYYY-MM-DD>/part-<first time_ns>-<pid>-<seq>.parquet``
(schema version 2, ``host`` in the path only, as ``runctrace record -o DIR`` writes).

The mix per host, so the analysis meets every case it handles on real nodes:

- long-lived services: some already running when "recording" starts (``initial``
  events), some started during the day; many still running at the end (no remove);
- batch jobs (seconds to an hour, mostly exit 0, a few exit 1 or SIGKILL/SIGTERM);
- short-lived probes and one-shot tasks (under a few seconds);
- pod sandboxes (the pause container of each pod) on Kubernetes hosts;
- crash loops: one logical container restarting with the kubelet's back-off
  (10 s, 20 s, 40 s ... capped at 5 min), exit 1 or SIGKILL (OOM); on Docker hosts
  the restarts reuse the container ID, as ``docker run --restart=always`` does;
- a few removes dropped (0.1 %), counted as ``lost`` in the footer, as a recorder
  under pressure would.

Hosts come in three flavours: containerd + Kubernetes (CRI annotations), CRI-O +
Kubernetes (CRI-O annotations, runc's default root), Docker (no annotations). Some
containers on every host are runc run by hand.

``config_json`` is left empty: real specs are KiBs per event, the report never
reads that column, and the benchmark measures the analysis, not disk.

Everything is generated with numpy and Arrow kernels, host by host; no Python loop
over containers or events.

Usage::

    python bench/synth.py OUT_DIR --hosts 100 --events-per-host 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from runctrace.runc.enrich import manager_of
from runctrace.store.schema import DATASET_SCHEMA, SCHEMA, SCHEMA_VERSION

START = np.datetime64("2026-01-01T00:00:00", "ns").astype(np.int64)
SECOND = 1_000_000_000
DAY = 86_400 * SECOND

NAMESPACES = ["default", "kube-system", "monitoring", "ci", "prod-web", "prod-api", "batch", "data", "staging", "logging"]
APPS = [
    ("web", "docker.io/library/nginx:1.25", ["nginx", "-g", "daemon off;"]),
    ("api", "ghcr.io/example/api:2.3.1", ["/app/api", "--port", "8080"]),
    ("worker", "ghcr.io/example/worker:2.3.1", ["/app/worker", "--queue", "default"]),
    ("redis", "docker.io/library/redis:7", ["redis-server", "--save", ""]),
    ("postgres", "docker.io/library/postgres:16", ["postgres"]),
    ("prometheus", "quay.io/prometheus/prometheus:v2.48.0", ["/bin/prometheus", "--config.file=/etc/prometheus.yml"]),
    ("fluent-bit", "cr.fluentbit.io/fluent/fluent-bit:2.2", ["/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"]),
    ("coredns", "registry.k8s.io/coredns/coredns:v1.11.1", ["/coredns", "-conf", "/etc/coredns/Corefile"]),
    ("kube-proxy", "registry.k8s.io/kube-proxy:v1.29.0", ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf"]),
    ("etl", "ghcr.io/example/etl:0.9", ["python", "-m", "etl.run"]),
    ("report", "ghcr.io/example/report:0.9", ["python", "-m", "report"]),
    ("backup", "docker.io/library/alpine:3.19", ["sh", "-c", "tar czf /backup/db.tgz /data"]),
    ("migrate", "ghcr.io/example/api:2.3.1", ["/app/migrate", "up"]),
    ("ci-runner", "docker.io/library/golang:1.22", ["go", "test", "./..."]),
    ("healthcheck", "docker.io/library/busybox:1.36", ["wget", "-q", "-O-", "http://localhost:8080/healthz"]),
    ("cron-sync", "docker.io/library/alpine:3.19", ["sh", "-c", "rsync -a /src /dst"]),
]
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

# Kinds of lifetime: share of lifetimes, lifetime distribution (lognormal median s, sigma).
KINDS = {
    "service": (0.02, None, None),
    "batch": (0.38, 60.0, 1.6),
    "short": (0.30, 0.8, 1.0),
    "sandbox": (0.17, 90.0, 1.5),
    "crashloop": (0.13, 2.5, 0.6),
}


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int = 32) -> pa.Array:
    """``n`` random lowercase hex strings (container IDs), built as one buffer."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    out = np.empty((n, nbytes * 2), dtype=np.uint8)
    out[:, 0::2] = HEX[raw >> 4]
    out[:, 1::2] = HEX[raw & 15]
    offsets = np.arange(n + 1, dtype=np.int32) * (nbytes * 2)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _interleave(columns: List[pa.Array]) -> pa.Array:
    """Rows of several equal-length arrays, flattened row by row: [a0, b0, a1, b1, ...]."""
    n, k = len(columns[0]), len(columns)
    flat = pa.concat_arrays([c.cast(pa.string()) for c in columns])
    idx = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).ravel()
    return flat.take(pa.array(idx))


def _list_of(columns: List[pa.Array], valid: Optional[np.ndarray] = None) -> pa.Array:
    n, k = len(columns[0]), len(columns)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * k)
    arr = pa.ListArray.from_arrays(offsets, _interleave(columns))
    if valid is not None:
        arr = pc.if_else(pa.array(valid), arr, pa.nulls(n, arr.type))
    return arr


def _map_of(keys: List[str], columns: List[pa.Array], valid: np.ndarray) -> pa.Array:
    k = len(columns)
    counts = np.where(valid, k, 0)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    rows = np.flatnonzero(valid)
    values = _interleave([c.take(pa.array(rows)) for c in columns]) if len(rows) else pa.array([], pa.string())
    key_arr = pa.array(np.tile(np.array(keys, dtype=object), len(rows)), type=pa.string())
    mask = pa.array(~valid)
    return pa.MapArray.from_arrays(pa.array(offsets), key_arr, values, mask=mask)


def _strings(values: List[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def host_table(host: str, flavour: str, events: int, span_ns: int, seed: int) -> pa.Table:
    """One host's synthetic events, sorted by time, in SCHEMA."""
    rng = np.random.default_rng(seed)
    kube = flavour in ("containerd", "cri-o")
    n_life = max(events // 2 + events // 50, 8)

    # ---- how many lifetimes of each kind
    shares = {k: v[0] for k, v in KINDS.items()}
    if not kube:
        shares["sandbox"] = 0.0
    total = sum(shares.values())
    counts = {k: int(round(n_life * s / total)) for k, s in shares.items()}
    kind_names = list(KINDS)
    kind = np.repeat(np.arange(len(kind_names)), [counts[k] for k in kind_names])
    n = len(kind)
    K = {name: i for i, name in enumerate(kind_names)}

    # ---- which app each lifetime runs ("template"): apps x namespaces; a few per host
    app = rng.integers(0, len(APPS), n)
    ns = rng.integers(0, len(NAMESPACES), n)

    # ---- start times and lifetimes
    start = START + rng.integers(0, span_ns, n)
    life = np.empty(n)
    for name, (_, median, sigma) in KINDS.items():
        m = kind == K[name]
        if median is not None:
            life[m] = rng.lognormal(np.log(median), sigma, m.sum())
    svc = kind == K["service"]
    before = svc & (rng.random(n) < 0.5)  # running before the recording began
    start[before] = START - rng.integers(0, 30 * DAY, before.sum())
    life[svc] = rng.exponential(3 * DAY / SECOND, svc.sum())

    # ---- crash loops: a few logical containers per host, kubelet back-off between runs
    loop = kind == K["crashloop"]
    n_loop_runs = int(loop.sum())
    n_loops = max(1, min(12, n_loop_runs // 40))
    loop_id = np.full(n, -1)
    if n_loop_runs:
        which = np.sort(rng.integers(0, n_loops, n_loop_runs))
        loop_id[loop] = which
        first = np.r_[0, np.flatnonzero(np.diff(which)) + 1]
        run_no = np.arange(n_loop_runs) - np.repeat(first, np.diff(np.r_[first, n_loop_runs]))
        backoff = np.minimum(10.0 * 2.0 ** np.minimum(run_no, 10), 300.0)
        step = (life[loop] + backoff) * SECOND
        csum = np.cumsum(step)
        group_base = np.repeat(csum[first] - step[first], np.diff(np.r_[first, n_loop_runs]))
        loop_start = START + rng.integers(0, span_ns // 2, n_loops)
        start[loop] = loop_start[which] + (csum - step - group_base).astype(np.int64)
        app[loop] = rng.integers(0, len(APPS), n_loops)[which]
        ns[loop] = rng.integers(0, len(NAMESPACES), n_loops)[which]
    end = start + (life * SECOND).astype(np.int64)

    # ---- how each ended
    exit_code = np.zeros(n, dtype=np.int64)
    sig = np.full(n, -1)
    r = rng.random(n)
    fail = (r < 0.05) & ~svc
    exit_code[fail] = 1
    killed = (r > 0.985) & ~loop
    sig[killed] = np.where(rng.random(killed.sum()) < 0.5, 9, 15)
    exit_code[loop] = 1
    oom = loop & (rng.random(n) < 0.3)
    sig[oom] = 9
    exit_code[sig >= 0] = -1

    # ---- identity: IDs, pods, hostnames, manager
    ids = _hex_ids(rng, n)
    app_names = np.array([a[0] for a in APPS], dtype=object)
    images = np.array([a[1] for a in APPS], dtype=object)
    if not kube and n_loop_runs:
        # docker run --restart=always: the same container restarts under one ID
        loop_rows = np.flatnonzero(loop)
        firsts = loop_rows[np.r_[0, np.flatnonzero(np.diff(loop_id[loop_rows])) + 1]]
        ids = ids.take(pa.array(np.where(loop, firsts[np.maximum(loop_id, 0)], np.arange(n))))
    # Every pod has its own name, except that a crash-looping container restarts in
    # the same pod (that is what makes it one logical container).
    suffix = _hex_ids(rng, n, 3)
    loop_suffix = _hex_ids(rng, n_loops, 3).take(pa.array(np.maximum(loop_id, 0)))
    pod_suffix = pc.if_else(pa.array(loop), loop_suffix, suffix)
    pod = pc.binary_join_element_wise(_strings(list(app_names)).take(pa.array(app)), pod_suffix, "-")
    namespace = _strings(NAMESPACES).take(pa.array(ns))
    is_sandbox = kind == K["sandbox"]
    image = pc.if_else(pa.array(is_sandbox), PAUSE_IMAGE, _strings(list(images)).take(pa.array(app)))
    cname = pc.if_else(pa.array(is_sandbox), pa.scalar(None, pa.string()), _strings(list(app_names)).take(pa.array(app)))
    ctype = pc.if_else(pa.array(is_sandbox), "sandbox", "container")

    by_hand = (rng.random(n) < 0.01) & ~loop & (kind != K["sandbox"])  # a person running runc now and then
    if flavour == "containerd":
        root = np.where(by_hand, "/run/runc", "/run/containerd/runc/k8s.io")
    elif flavour == "cri-o":
        root = np.full(n, "/run/runc", dtype=object)
    else:
        root = np.where(by_hand, "/run/runc", np.where(rng.random(n) < 0.5, "/run/containerd/runc/moby", "/run/docker/runtime-runc/moby"))
    root = pa.array(root.astype(object), type=pa.string())
    annotated = np.full(n, kube) & ~by_hand
    if kube:
        hostname = pc.if_else(pa.array(by_hand), "runc", pod)
    else:
        hostname = pc.if_else(pa.array(by_hand), "runc", pc.utf8_slice_codeunits(ids, 0, 12))
        if n_loop_runs:  # docker keeps the hostname across restarts of one container
            hostname = pc.if_else(pa.array(loop), pc.utf8_slice_codeunits(ids, 0, 12), hostname)

    if flavour == "containerd":
        keys = ["io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.cri.sandbox-name", "io.kubernetes.cri.container-name",
                "io.kubernetes.cri.image-name", "io.kubernetes.cri.sandbox-id"]
        cols = [ctype, namespace, pod, pc.fill_null(cname, ""), image, ids]
    else:
        keys = ["io.kubernetes.cri-o.ContainerType", "io.kubernetes.pod.namespace", "io.kubernetes.pod.name",
                "io.kubernetes.container.name", "io.kubernetes.cri-o.ImageName", "io.kubernetes.cri-o.SandboxID",
                "io.container.manager"]
        cols = [ctype, namespace, pod, pc.fill_null(cname, "POD"), image, ids, pa.array(["cri-o"] * n)]
    annotations = _map_of(keys, cols, annotated) if kube else pa.nulls(n, SCHEMA.field("annotations").type)

    # process args: the app's argv (a take on the per-app lists), /pause for sandboxes
    argv_of = pa.array([a[2] for a in APPS] + [["/pause"]], type=pa.list_(pa.string()))
    process_args = argv_of.take(pa.array(np.where(is_sandbox, len(APPS), app)))

    # ---- events: initial / add at start, remove at end, inside [START, START + span)
    t_end = START + span_ns
    in_window_start = (start >= START) & (start < t_end)
    initial = before | (svc & (start < START))
    first_event = np.where(initial, START, start)
    has_first = in_window_start | initial
    has_remove = (end >= START) & (end < t_end) & has_first
    lost = has_remove & (rng.random(n) < 0.001)
    has_remove &= ~lost
    a_rows = np.flatnonzero(has_first)
    r_rows = np.flatnonzero(has_remove)
    rows = np.r_[a_rows, r_rows]
    t = np.r_[first_event[a_rows], end[r_rows]]
    etype = np.r_[np.where(initial[a_rows], 1, 0), np.full(len(r_rows), 2)]
    order = np.argsort(t, kind="stable")[:events]  # about `events`; trim the tail exactly
    rows, t, etype = rows[order], t[order], etype[order]
    take = pa.array(rows)
    is_remove = etype == 2
    m = len(rows)

    bundle_prefix = {
        "containerd": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/",
        "cri-o": "/run/containers/storage/overlay-containers/",
        "docker": "/run/containerd/io.containerd.runtime.v2.task/moby/",
    }[flavour]
    ev_ids = ids.take(take)
    bundle = pc.binary_join_element_wise(pa.array([bundle_prefix] * m), ev_ids, "")
    ev_root = root.take(take)
    runtime_args = _list_of([pa.array(["runc"] * m), pa.array(["--root"] * m), ev_root,
                             pa.array(["create"] * m), pa.array(["--bundle"] * m), bundle, ev_ids])
    ec = exit_code[rows]
    sg = sig[rows]
    pid = rng.integers(1000, 4_000_000, n)[rows]
    # Enrichment as the recorder writes it (schema v2): manager by enrich.manager_of's
    # rule, the caller, namespace inodes, cgroup, the Kubernetes fields, lifetime_ns.
    caller_of = {"containerd": "containerd-shim", "cri-o": "conmon", "docker": "containerd-shim"}[flavour]
    callers = np.where(by_hand, "bash", caller_of).astype(object)
    # The recorder's manager rule, applied once per distinct (root, caller).
    roots = np.asarray(root.to_numpy(zero_copy_only=False), dtype=object)
    pairs, inverse = np.unique(np.char.add(np.char.add(roots.astype(str), "|"), callers.astype(str)), return_inverse=True)
    crio_ann = {"io.kubernetes.cri-o.ContainerType": "container"} if flavour == "cri-o" else None
    decided = np.array([manager_of(p.split("|")[0], p.split("|")[1], crio_ann if not p.endswith("bash") else None)
                        for p in pairs], dtype=object)
    manager = decided[inverse.ravel()]
    none = pa.scalar(None, pa.string())
    k8s = pa.array(annotated)
    first_ns = np.where(initial, START, start)
    lifetime_ns = np.where(is_remove, end[rows] - first_ns[rows], -1)
    ns_base = np.int64(4026531840)
    cgroup_prefix = {"containerd": "/kubepods.slice/cri-containerd-", "cri-o": "/kubepods.slice/crio-",
                     "docker": "/system.slice/docker-"}[flavour]
    columns: Dict[str, pa.Array] = {
        "time": pa.array(t // 1000, type=pa.timestamp("us", tz="UTC")),
        "time_ns": pa.array(t, type=pa.int64()),
        "type": pa.array(np.array(["add", "initial", "remove"], dtype=object)[etype], type=pa.string()),
        "container_id": ev_ids,
        "container_pid": pa.array(pid.astype(np.int32)),
        "bundle": bundle,
        "backend": pa.array(["synthetic"] * m, type=pa.string()),
        "runtime": pa.array(["/usr/bin/runc"] * m, type=pa.string()),
        "runtime_root": ev_root,
        "runtime_args": runtime_args,
        "host": pa.array([host] * m, type=pa.string()),
        "exit_code": pa.array(ec.astype(np.int32), mask=~is_remove | (ec < 0)),
        "signal": pa.array(sg.astype(np.int32), mask=~is_remove | (sg < 0)),
        "error": pa.nulls(m, pa.string()),
        "config_json": pa.nulls(m, pa.string()),
        "hostname": hostname.take(take),
        "process_args": process_args.take(take),
        "cwd": pa.array(["/"] * m, type=pa.string()),
        "root_path": pc.binary_join_element_wise(bundle, pa.array(["/rootfs"] * m), ""),
        "annotations": annotations.take(take),
        "manager": pa.array(manager[rows], type=pa.string()),
        "caller": pa.array(callers[rows], type=pa.string()),
        "mntns": pa.array(ns_base + rng.integers(1, 1 << 20, n)[rows]),
        "pidns": pa.array(ns_base + rng.integers(1, 1 << 20, n)[rows]),
        "netns": pa.array(ns_base + rng.integers(1, 1 << 20, n)[rows]),
        "cgroup": pc.binary_join_element_wise(pa.array([cgroup_prefix] * m), ev_ids, pa.array([".scope"] * m), ""),
        "lifetime_ns": pa.array(lifetime_ns, mask=lifetime_ns < 0),
        "pod_name": pc.if_else(k8s, pod, none).take(take),
        "pod_namespace": pc.if_else(k8s, namespace, none).take(take),
        "pod_uid": pc.if_else(k8s, _hex_ids(rng, n, 16), none).take(take),
        "container_name": pc.if_else(k8s, cname, none).take(take),
        "sandbox_id": pc.if_else(k8s, _hex_ids(rng, n), none).take(take),
        "image_name": pc.if_else(k8s, image, none).take(take),
        "is_sandbox": pc.if_else(k8s, pa.array(is_sandbox), pa.scalar(None, pa.bool_())).take(take),
    }
    return pa.table([columns[f.name].cast(f.type) for f in SCHEMA], schema=SCHEMA)


def flavour_of(i: int) -> str:
    return ("containerd", "containerd", "containerd", "containerd", "cri-o", "docker")[i % 6]


def write_host(out_dir: str, i: int, events: int, span_ns: int, seed: int, row_group: int = 65_536) -> str:
    host = f"synth-{i:04d}"
    table = host_table(host, flavour_of(i), events, span_ns, seed + i)
    day = np.datetime_as_string(np.datetime64(int(START), "ns"), unit="D")
    directory = os.path.join(out_dir, f"host={host}", f"date={day}")
    os.makedirs(directory, exist_ok=True)
    # The recorder's file name (part-<first time_ns>-<pid>-<seq>), with host in the path only.
    first_ns = int(table.column("time_ns")[0].as_py()) if table.num_rows else int(START)
    path = os.path.join(directory, f"part-{first_ns}-{os.getpid()}-{i + 1:06d}.parquet")
    types = table.column("type")
    stats = {
        "adds": int(pc.sum(pc.equal(types, "add")).as_py() or 0),
        "initial": int(pc.sum(pc.equal(types, "initial")).as_py() or 0),
        "removes": int(pc.sum(pc.equal(types, "remove")).as_py() or 0),
        "lost": int(round(events * 0.0005)), "missed": 0,
    }
    meta = {
        "runctrace.synthetic": "true",
        "runctrace.synthetic.generator": "bench/synth.py",
        "runctrace.synthetic.seed": str(seed + i),
        "runctrace.host": host,
        "runctrace.backend": "synthetic",
        "runctrace.stats": json.dumps(stats),
    }
    table = table.drop_columns(["host"]).cast(DATASET_SCHEMA)
    with pq.ParquetWriter(path, DATASET_SCHEMA, compression="zstd") as w:
        w.write_table(table, row_group_size=row_group)
        w.add_key_value_metadata(meta)
    assert pq.read_schema(path).metadata[b"runctrace.schema_version"] == SCHEMA_VERSION.encode()
    return path


def generate(out_dir: str, hosts: int = 100, events_per_host: int = 100_000, span_s: float = 86_400,
             seed: int = 1, quiet: bool = True) -> List[str]:
    """Write ``hosts`` files of about ``events_per_host`` events each; returns their paths."""
    paths = []
    t0 = time.perf_counter()
    for i in range(hosts):
        paths.append(write_host(out_dir, i, events_per_host, int(span_s * SECOND), seed))
        if not quiet and (i + 1) % 10 == 0:
            print(f"  {i + 1}/{hosts} hosts written ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    return paths


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Write SYNTHETIC runctrace recordings (benchmarks/tests only).")
    p.add_argument("out_dir")
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--events-per-host", type=int, default=100_000)
    p.add_argument("--span", type=float, default=86_400, help="seconds covered by each host's recording")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    paths = generate(a.out_dir, a.hosts, a.events_per_host, a.span, a.seed, quiet=False)
    size = sum(os.path.getsize(x) for x in paths)
    print(f"wrote {len(paths)} synthetic files, {size / 2**20:.1f} MiB, to {a.out_dir} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
