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
_SLOT = {k: i for i, k in enumerate(_WANTED)}
DICT_TYPE = pa.dictionary(pa.int32(), pa.string())


def _dictionary(arr: pa.Array) -> pa.DictionaryArray:
    if pa.types.is_dictionary(arr.type):
        return arr
    return pc.dictionary_encode(arr.cast(pa.string()))


def _compact(codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """Codes into ``dictionary`` (-1 = null) as a DictionaryArray holding only the
    values used: the map's dictionary also holds every other annotation's values."""
    used = np.zeros(len(dictionary) + 1, dtype=bool)
    used[codes] = True  # code -1 lands on the extra last slot (a sentinel)
    used[-1] = False
    remap = np.cumsum(used, dtype=np.int64) - 1
    new = np.where(codes >= 0, remap[codes], -1).astype(np.int32)
    values = dictionary.take(pa.array(np.flatnonzero(used[:-1])))
    return pa.DictionaryArray.from_arrays(pa.array(new, mask=new < 0), values)


def _chunk_columns(chunk: pa.MapArray) -> Dict[str, pa.Array]:
    """The derived columns of one map chunk, as dictionary arrays.

    ``map_lookup`` costs ~150 ns per row per key and CRI specs carry a dozen keys,
    so instead: tag every entry with the wanted key it is (``index_in``, on the
    keys' dictionary when the reader decoded them as one, see
    :mod:`runctrace.analysis.io`), find each entry's row from the offsets, build a
    (key, row) -> entry table with one fancy assignment, and pick each column's
    entry with integer operations. Values are read through their dictionary, so no
    string is copied or hashed per row.

    Keys are unique within a map: the recorder builds it from the spec's JSON object
    (were one repeated, one of its values would be taken).
    """
    n = len(chunk)
    offsets = chunk.offsets.to_numpy()
    lo, hi = int(offsets[0]), int(offsets[-1])
    keys = _dictionary(chunk.keys.slice(lo, hi - lo))  # .keys/.items ignore the slice
    items = _dictionary(chunk.items.slice(lo, hi - lo))
    tag_of = pc.index_in(keys.dictionary, value_set=pa.array(_WANTED)).fill_null(-1).to_numpy()
    which = tag_of[keys.indices.to_numpy()] if hi > lo else np.zeros(0, np.int64)
    value = items.indices.fill_null(-1).to_numpy().astype(np.int64) if hi > lo else np.zeros(0, np.int64)
    hits = np.flatnonzero(which >= 0)
    entry = np.full((len(_WANTED), n), -1, dtype=np.int64)
    if len(hits):
        rows = np.repeat(np.arange(n), np.diff(offsets))
        entry[which[hits], rows[hits]] = hits

    def code(key_names) -> np.ndarray:
        e = entry[_SLOT[key_names[0]]]
        for k in key_names[1:]:
            e = np.where(e >= 0, e, entry[_SLOT[k]])
        return np.where(e >= 0, value[np.maximum(e, 0)] if len(value) else -1, -1)

    out = {c: _compact(code(keys_), items.dictionary) for c, keys_ in KUBERNETES_ANNOTATIONS.items()}

    # The manager the spec names (io.container.manager), else what the CRI keys imply.
    named = _compact(code([_MANAGER_ANNOTATION]), items.dictionary)
    names = [_MANAGER_NAMES.get(v, v) for v in named.dictionary.to_pylist()]
    crio = np.zeros(n, bool)
    for k in _CRIO_MARKERS:
        crio |= entry[_SLOT[k]] >= 0
    containerd = entry[_SLOT[_CONTAINERD_CRI_MARKER]] >= 0
    categories = list(dict.fromkeys(names + ["cri-o", "containerd"]))
    lookup = np.array([categories.index(x) for x in names] + [-1], dtype=np.int64)
    named_codes = named.indices.fill_null(-1).to_numpy().astype(np.int64)
    hint = np.where(crio, categories.index("cri-o"), np.where(containerd, categories.index("containerd"), -1))
    codes = np.where(named_codes >= 0, lookup[named_codes], hint).astype(np.int32)
    out[ANNOTATED_MANAGER] = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(categories, pa.string()))
    return out


def annotation_arrays(annotations) -> Dict[str, pa.ChunkedArray]:
    """The Kubernetes columns and the annotated manager, from a map<string,string>
    array (keys/values may be dictionary-encoded), as dictionary-encoded arrays.

    Arrow and numpy only (see :func:`_chunk_columns`); no per-row Python. Used by
    the file reader on each chunk, and by :func:`with_kubernetes` on a DataFrame.
    """
    chunks = annotations.chunks if isinstance(annotations, pa.ChunkedArray) else [annotations]
    found = [_chunk_columns(c) for c in chunks if len(c)]
    return {
        column: pa.chunked_array([f[column] for f in found], type=DICT_TYPE)
        for column in DERIVED_FROM_ANNOTATIONS
    }


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
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0))
    out = pa.table({"c": arr}).to_pandas()["c"]
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
        if isinstance(ser.dtype, pd.CategoricalDtype):
            codes, width = ser.cat.codes.to_numpy(dtype=np.int64), len(ser.cat.categories) + 1
        else:  # hashing once beats building a Categorical (which re-checks uniqueness)
            codes, uniq = pd.factorize(ser)
            codes, width = codes.astype(np.int64), len(uniq) + 1
        if span * width >= _CODE_LIMIT:
            combined, uniq = pd.factorize(combined)
            combined = combined.astype(np.int64)
            span = max(len(uniq), 1)
        combined = combined * width + (codes + 1)
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
