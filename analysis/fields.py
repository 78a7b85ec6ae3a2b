"""Columns derived from the raw recording: Kubernetes names, the manager, the command.

Why these exist: the recording keeps what runc saw (the OCI spec's annotations map,
runc's ``--root``, the init's argv). People ask about pods, images and "which tool
started this". The answers are *derived*, so they live here, once, and both the file
reader (:mod:`runctrace.analysis.io`, which derives them batch by batch so the large
annotations map never has to sit in memory whole) and the pandas functions below use
the same definitions.

Everything is vectorised: Arrow compute on the map column, or a Python function
applied to each *distinct* value (a few hundred runtime roots, not millions of rows).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

MAP_TYPE = pa.map_(pa.string(), pa.string())

# Derived column -> annotation keys, first found wins. containerd's CRI plugin writes
# io.kubernetes.cri.*; CRI-O writes io.kubernetes.cri-o.* and copies the kubelet's
# io.kubernetes.pod.* / io.kubernetes.container.name labels into the spec.
KUBERNETES_ANNOTATIONS: Dict[str, tuple] = {
    "namespace": ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"),
    "pod": ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"),
    "container_name": ("io.kubernetes.cri.container-name", "io.kubernetes.container.name"),
    "image": ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"),
    "container_type": ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"),
}
KUBERNETES_COLUMNS = tuple(KUBERNETES_ANNOTATIONS)

# The manager named by the spec itself, when it names one: podman and CRI-O write
# io.container.manager ("libpod", "cri-o"); CRI-O also leaves its own keys. This
# matters because CRI-O and podman both default to runc's own root, /run/runc, so
# the root alone would call their containers "runc (by hand)".
ANNOTATED_MANAGER = "annotated_manager"
_MANAGER_ANNOTATION = "io.container.manager"
_MANAGER_NAMES = {"libpod": "podman", "cri-o": "cri-o", "crio": "cri-o"}
_CRIO_MARKERS = ("io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID")
_CONTAINERD_CRI_MARKER = "io.kubernetes.cri.container-type"

DERIVED_FROM_ANNOTATIONS = KUBERNETES_COLUMNS + (ANNOTATED_MANAGER,)


# ---------------------------------------------------------------- Arrow level


_WANTED = tuple(dict.fromkeys(
    [k for keys in KUBERNETES_ANNOTATIONS.values() for k in keys]
    + [_MANAGER_ANNOTATION, *_CRIO_MARKERS, _CONTAINERD_CRI_MARKER]
))


def _lookup_chunk(chunk: pa.MapArray) -> Dict[str, pa.Array]:
    """Every wanted key's value (first occurrence) for each row of one map chunk.

    One pass over the flattened entries instead of one ``map_lookup`` per key:
    ``index_in`` tags each entry with the wanted key it is (one hash probe), numpy
    finds the row each entry belongs to from the offsets, and a ``take`` per key
    gathers the values. Five to ten times faster than ``map_lookup`` on CRI specs,
    which carry a dozen annotations each.
    """
    n = len(chunk)
    offsets = chunk.offsets.to_numpy()
    lo, hi = int(offsets[0]), int(offsets[-1])
    keys = chunk.keys.slice(lo, hi - lo)  # .keys/.items ignore the chunk's slice
    items = chunk.items.slice(lo, hi - lo)
    which = pc.index_in(keys, value_set=pa.array(_WANTED)).fill_null(-1).to_numpy()
    hits = np.flatnonzero(which >= 0)
    tag = which[hits]
    rows = np.repeat(np.arange(n), np.diff(offsets))[hits] if len(hits) else hits
    out = {}
    for j, key in enumerate(_WANTED):
        pos = hits[tag == j]
        r = rows[tag == j]
        first = np.r_[True, r[1:] != r[:-1]] if len(r) else np.zeros(0, bool)
        idx = np.full(n, -1, dtype=np.int64)
        idx[r[first]] = pos[first]
        out[key] = items.take(pa.array(idx, mask=idx < 0))
    return out


def annotation_arrays(annotations) -> Dict[str, pa.ChunkedArray]:
    """The Kubernetes columns and the annotated manager, from a map<string,string> array.

    Pure Arrow/numpy (see :func:`_lookup_chunk`); no per-row Python. Used by the file
    reader on each chunk, and by :func:`with_kubernetes` on a DataFrame.
    """
    chunks = annotations.chunks if isinstance(annotations, pa.ChunkedArray) else [annotations]
    found = [_lookup_chunk(c) for c in chunks if len(c)]
    string = pa.string()

    def lookup(key: str) -> pa.ChunkedArray:
        return pa.chunked_array([f[key] for f in found], type=string)

    out = {}
    for column, keys in KUBERNETES_ANNOTATIONS.items():
        values = [lookup(k) for k in keys]
        out[column] = values[0] if len(values) == 1 else pc.coalesce(*values)
    named = lookup(_MANAGER_ANNOTATION)
    for raw, name in _MANAGER_NAMES.items():
        named = pc.if_else(pc.equal(named, raw), name, named)
    crio = pc.or_kleene(*(pc.is_valid(lookup(k)) for k in _CRIO_MARKERS))
    containerd = pc.is_valid(lookup(_CONTAINERD_CRI_MARKER))
    none = pa.scalar(None, pa.string())
    hint = pc.if_else(crio, "cri-o", pc.if_else(containerd, "containerd", none))
    out[ANNOTATED_MANAGER] = pc.coalesce(named, hint)
    return out


def joined_args(process_args) -> pa.ChunkedArray:
    """argv lists joined with spaces: one string that groups and prints well."""
    if isinstance(process_args, pa.Array):
        process_args = pa.chunked_array([process_args])
    return pc.binary_join(process_args, " ")


# ---------------------------------------------------------------- pandas level


def _arrow(series: pd.Series, type_: pa.DataType) -> pa.ChunkedArray:
    """A pandas column as Arrow, whether it is Arrow-backed or Python objects."""
    arr = pa.array(series, type=type_, from_pandas=True)
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _category(arr: pa.ChunkedArray, index: pd.Index) -> pd.Series:
    values = pc.dictionary_encode(arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0))
    out = values.to_pandas()
    if not isinstance(out.dtype, pd.CategoricalDtype):  # all-null input comes back as object
        out = out.astype("category")
    return pd.Series(out.values, index=index)


def with_kubernetes(events: pd.DataFrame) -> pd.DataFrame:
    """Add ``namespace``, ``pod``, ``container_name``, ``image``, ``container_type``.

    Also ``annotated_manager`` (see :func:`with_manager`). A frame that already has
    them (the file reader derives them while reading) is returned unchanged; a frame
    with no ``annotations`` column gets empty ones, so later steps need not check.
    """
    missing = [c for c in DERIVED_FROM_ANNOTATIONS if c not in events.columns]
    if not missing:
        return events
    if "annotations" in events.columns and len(events):
        derived = annotation_arrays(_arrow(events["annotations"], MAP_TYPE))
        new = {c: _category(derived[c], events.index) for c in missing}
    else:
        new = {c: pd.Series(pd.Categorical([None] * len(events)), index=events.index) for c in missing}
    return events.assign(**new)


def with_command(events: pd.DataFrame) -> pd.DataFrame:
    """Add ``command``: the container's argv as one string (for grouping and display)."""
    if "command" in events.columns:
        return events
    if "process_args" in events.columns and len(events):
        arr = joined_args(_arrow(events["process_args"], pa.list_(pa.string())))
        return events.assign(command=_category(arr, events.index))
    return events.assign(command=pd.Categorical([None] * len(events)))


def manager_from_root(root: Optional[str]) -> str:
    """Who called runc, judged from runc's ``--root`` (its state directory).

    Each manager keeps runc's state under its own root:

    - ``/run/containerd/runc/<namespace>``: containerd's runc shim. Namespace ``moby``
      is Docker (Docker >= 20.10 runs containers through containerd).
    - ``/run/docker/runtime-runc/<namespace>``: Docker's own runtime configuration.
    - a path with ``crio``/``cri-o`` in it: CRI-O (through conmon).
    - a path with ``libpod``/``podman`` in it: podman.
    - no ``--root``, ``/run/runc``, or ``$XDG_RUNTIME_DIR/runc``: runc's default, so a
      person or a script ran runc by hand (CRI-O and podman also default here; their
      annotations tell them apart, see :func:`with_manager`).
    """
    if not root or not isinstance(root, str):
        return "runc"
    r = root.rstrip("/")
    parts = r.split("/")
    if r.startswith(("/run/containerd/runc", "/var/run/containerd/runc")):
        namespace = parts[-1] if parts[-1] != "runc" else ""
        return "docker" if namespace == "moby" else "containerd"
    if "/docker/" in r + "/" or r.startswith(("/run/docker", "/var/run/docker")):
        return "docker"
    if "crio" in r or "cri-o" in r or "conmon" in r:
        return "cri-o"
    if "libpod" in r or "podman" in r:
        return "podman"
    if r in ("/run/runc", "/var/run/runc") or (r.startswith("/run/user/") and parts[-1] == "runc"):
        return "runc"
    if "containerd" in r:
        return "containerd"
    return "other"


def map_distinct(frame: pd.DataFrame, columns: Sequence[str], func: Callable[..., object]) -> pd.Series:
    """``func(*row)`` for every row, computed once per *distinct* combination of columns.

    The result is categorical. Cost: one hash over the rows' category codes, and
    ``func`` called as many times as there are distinct combinations.
    """
    codes, uniques = combined_codes(frame, columns)
    results = [
        func(*(None if pd.isna(v) else v for v in row))
        for row in uniques.itertuples(index=False, name=None)
    ]
    labels, inverse = np.unique(np.array(["" if v is None else str(v) for v in results], dtype=object), return_inverse=True)
    cat_codes = inverse[codes] if len(codes) else np.array([], dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(cat_codes, categories=pd.Index(labels)), index=frame.index)


_CODE_LIMIT = 1 << 62


def combined_codes(frame: pd.DataFrame, columns: Sequence[str]):
    """One integer per distinct combination of ``columns``, and those combinations.

    Returns ``(codes, uniques)``: ``codes[i]`` numbers row ``i``'s combination
    (0, 1, ... in order of first appearance) and row ``c`` of the ``uniques`` frame
    holds combination ``c``. Missing values are a value of their own. Works on
    category codes, so it is one int64 hash whatever the strings are; the running
    code is re-numbered whenever the next multiplication could overflow int64.
    """
    n = len(frame)
    combined = np.zeros(n, dtype=np.int64)
    span = 1
    for column in columns:
        ser = frame[column]
        if not isinstance(ser.dtype, pd.CategoricalDtype):
            ser = ser.astype("category")
        width = len(ser.cat.categories) + 1
        if span * width >= _CODE_LIMIT:
            combined, uniq = pd.factorize(combined)
            combined = combined.astype(np.int64)
            span = max(len(uniq), 1)
        combined = combined * width + (ser.cat.codes.to_numpy(dtype=np.int64) + 1)
        span *= width
    codes, uniq = pd.factorize(combined)
    codes = codes.astype(np.int64)
    first = np.full(len(uniq), n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    uniques = frame[list(columns)].iloc[first].reset_index(drop=True)
    return codes, uniques


def with_manager(events: pd.DataFrame) -> pd.DataFrame:
    """Add ``manager``: containerd, docker, cri-o, podman, runc (by hand) or other.

    A ``manager`` column already in the data (a later recorder may record it) wins
    where it is set; then the manager the annotations name; then the runtime root
    (:func:`manager_from_root`).
    """
    events = with_kubernetes(events)
    cols = [c for c in ("manager", ANNOTATED_MANAGER, "runtime_root") if c in events.columns]
    if not len(events):
        return events.assign(manager=pd.Categorical([]))

    def decide(*values):
        given = dict(zip(cols, values))
        return given.get("manager") or given.get(ANNOTATED_MANAGER) or manager_from_root(given.get("runtime_root"))

    return events.assign(manager=map_distinct(events, cols, decide))


def derive_all(events: pd.DataFrame) -> pd.DataFrame:
    """Every derived column: Kubernetes fields, ``command`` and ``manager``."""
    return events.pipe(with_kubernetes).pipe(with_command).pipe(with_manager)
