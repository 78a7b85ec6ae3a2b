"""Columns the analysis groups by: Kubernetes names, the manager, the command line.

Since schema version 2 the recorder writes the Kubernetes fields (``pod_namespace``,
``pod_name``, ``container_name``, ``image_name``, ``is_sandbox``) and ``manager``
itself, and those typed columns are used as they are. Version-1 recordings have
only the raw material (the spec's ``annotations`` map, runc's ``--root``); for them
the same columns are derived here, with the recorder's own definitions
(:data:`runctrace.runc.enrich.K8S_ANNOTATIONS`, :func:`runctrace.runc.enrich.manager_of`), so
a dataset mixing both versions groups consistently.

Everything is vectorised: the annotations map is read through its dictionary codes
with numpy (:func:`annotation_arrays`), and per-value Python runs once per
*distinct* value (a few hundred runtime roots), never per row.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from runctrace import safetext
from runctrace.runc.enrich import K8S_ANNOTATIONS, manager_of

MAP_TYPE = pa.map_(pa.string(), pa.string())
DICT_TYPE = pa.dictionary(pa.int32(), pa.string())

# Typed columns of schema v2 that version-1 files lack, derived from annotations.
KUBERNETES_COLUMNS = ("pod_namespace", "pod_name", "container_name", "image_name", "is_sandbox")
_STRING_KEYS = {c: K8S_ANNOTATIONS[c] for c in KUBERNETES_COLUMNS if c in K8S_ANNOTATIONS}
_TYPE_KEYS = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")

# The manager a version-1 spec names: podman and CRI-O write io.container.manager
# ("libpod", "cri-o"); CRI-O also leaves io.kubernetes.cri-o.* keys. Needed because
# CRI-O and podman both default to runc's own root (/run/runc), where the root alone
# would say "by-hand".
ANNOTATED_MANAGER = "annotated_manager"
_MANAGER_ANNOTATION = "io.container.manager"
_MANAGER_NAMES = {"libpod": "conmon", "cri-o": "cri-o", "crio": "cri-o"}  # enrich.py's vocabulary
_CRIO_MARKERS = ("io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID")

DERIVED_FROM_ANNOTATIONS = KUBERNETES_COLUMNS + (ANNOTATED_MANAGER,)

_WANTED = tuple(dict.fromkeys(
    [k for keys in _STRING_KEYS.values() for k in keys] + [*_TYPE_KEYS, _MANAGER_ANNOTATION, *_CRIO_MARKERS]
))
_SLOT = {k: i for i, k in enumerate(_WANTED)}


# ---------------------------------------------------------------- Arrow level


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
    """The derived columns of one map chunk: dictionary arrays, and a bool array
    for ``is_sandbox``.

    ``map_lookup`` costs ~150 ns per row per key and CRI specs carry a dozen keys,
    so instead, in one pass over the flattened entries: tag each entry with the
    wanted key it is (``index_in`` on the keys' dictionary: the reader decodes keys
    as one, see :mod:`runctrace.analysis.io`), group the tagged entries by key (a
    radix sort of small ints), find each entry's row from the offsets, and write
    each column's value codes with one slice assignment per key. Values stay
    dictionary codes throughout: no string is copied or hashed per row.

    Keys are unique within a map: the recorder builds it from the spec's JSON object
    (were one repeated, one of its values would be taken).
    """
    n = len(chunk)
    offsets = chunk.offsets.to_numpy()
    lo, hi = int(offsets[0]), int(offsets[-1])
    keys = _dictionary(chunk.keys.slice(lo, hi - lo))  # .keys/.items ignore the slice
    items = _dictionary(chunk.items.slice(lo, hi - lo))
    tag_of = pc.index_in(keys.dictionary, value_set=pa.array(_WANTED)).fill_null(-1).to_numpy().astype(np.int8)
    which = tag_of[keys.indices.to_numpy()] if hi > lo else np.zeros(0, np.int8)
    hits = np.flatnonzero(which >= 0)
    tag = which[hits]
    order = np.argsort(tag, kind="stable")
    hits, tag = hits[order], tag[order]
    bounds = np.searchsorted(tag, np.arange(len(_WANTED) + 1))
    rows = np.repeat(np.arange(n), np.diff(offsets))[hits] if len(hits) else hits
    value = items.indices.take(pa.array(hits)).fill_null(-1).to_numpy().astype(np.int32) if len(hits) else np.zeros(0, np.int32)

    def span(key):
        j = _SLOT[key]
        return slice(bounds[j], bounds[j + 1])

    def code(key_names) -> np.ndarray:
        out = np.full(n, -1, dtype=np.int32)
        for k in reversed(key_names):  # the first key is written last, so it wins
            sl = span(k)
            out[rows[sl]] = value[sl]
        return out

    out: Dict[str, pa.Array] = {c: _compact(code(keys_), items.dictionary) for c, keys_ in _STRING_KEYS.items()}

    kind = _compact(code(_TYPE_KEYS), items.dictionary)
    sandbox = np.array([v == "sandbox" for v in kind.dictionary.to_pylist()] + [False], dtype=bool)
    kind_codes = kind.indices.fill_null(-1).to_numpy()
    out["is_sandbox"] = pa.array(sandbox[kind_codes], mask=kind_codes < 0)

    # The manager the spec names (io.container.manager), else what CRI-O's keys imply.
    named = _compact(code([_MANAGER_ANNOTATION]), items.dictionary)
    names = [_MANAGER_NAMES.get(v, v) for v in named.dictionary.to_pylist()]
    categories = list(dict.fromkeys(names + ["cri-o"]))
    hint = np.full(n, -1, dtype=np.int64)
    for k in _CRIO_MARKERS:
        hint[rows[span(k)]] = categories.index("cri-o")
    lookup = np.array([categories.index(x) for x in names] + [-1], dtype=np.int64)
    named_codes = named.indices.fill_null(-1).to_numpy().astype(np.int64)
    codes = np.where(named_codes >= 0, lookup[named_codes], hint).astype(np.int32)
    out[ANNOTATED_MANAGER] = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(categories, pa.string()))
    return out


def annotation_arrays(annotations) -> Dict[str, pa.ChunkedArray]:
    """The Kubernetes columns and the annotated manager from a map<string,string>
    array (keys/values may be dictionary-encoded). Strings come back
    dictionary-encoded, ``is_sandbox`` as bool.

    Arrow and numpy only (see :func:`_chunk_columns`); no per-row Python. Used by
    the file reader on each chunk of a version-1 file, and by
    :func:`with_kubernetes` on a DataFrame.
    """
    chunks = annotations.chunks if isinstance(annotations, pa.ChunkedArray) else [annotations]
    found = [_chunk_columns(c) for c in chunks if len(c)]
    return {
        column: pa.chunked_array([f[column] for f in found], type=pa.bool_() if column == "is_sandbox" else DICT_TYPE)
        for column in DERIVED_FROM_ANNOTATIONS
    }


def joined_args(process_args) -> pa.ChunkedArray:
    """argv lists joined with spaces: one string that groups and prints well."""
    if isinstance(process_args, pa.Array):
        process_args = pa.chunked_array([process_args])
    return pc.binary_join(process_args, " ")


# ---------------------------------------------------------------- pandas level
#
# Text with bytes that were not UTF-8 (surrogate escapes, U+DC80..U+DCFF, see
# runctrace.safetext) is kept in columns of Python objects: pandas' strings are
# Arrow's (UTF-8 only), its categoricals hash their categories as UTF-8, and
# groupby and merge build an index of inferred strings. Such columns are grouped
# and joined on their escaped form instead (one to one, valid Unicode).


def text_series(values, index=None, name=None) -> pd.Series:
    """Python strings as a Series: pandas strings when they are valid Unicode, Python
    objects when one holds a surrogate escape."""
    values = np.asarray(values, dtype=object)
    clean = all(safetext.is_clean(v) for v in values if isinstance(v, str))
    return pd.Series(values, index=index, name=name, dtype="str" if clean else object)


def key_form(series: pd.Series) -> pd.Series:
    """``series`` as something pandas can group and join on: itself, unless it is a
    column of Python objects; then every string in its escaped form (one to one, so
    groups and matches are the same; :func:`original_form` undoes it). Escaped
    once per distinct value."""
    if series.dtype != object:
        return series
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    keys = np.array([safetext.escape(u) if isinstance(u, str) else u for u in uniques] + [None], dtype=object)
    return pd.Series(keys[codes], index=series.index, name=series.name, dtype="str")


def original_form(series: pd.Series) -> pd.Series:
    """Undo :func:`key_form` (a column of escaped strings back to the originals)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    values = np.array([safetext.unescape(u) if isinstance(u, str) else u for u in uniques] + [None], dtype=object)
    return text_series(values[codes], series.index, series.name)


def _arrow(series: pd.Series, type_: pa.DataType) -> pa.ChunkedArray:
    """A pandas column as Arrow, whether it is Arrow-backed or Python objects."""
    arr = pa.array(series, type=type_, from_pandas=True)
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _to_series(arr: pa.ChunkedArray, index: pd.Index) -> pd.Series:
    if pa.types.is_boolean(arr.type):
        out = pd.Series(pd.array(arr.to_pylist() if arr.null_count else arr.to_numpy(zero_copy_only=False), dtype="boolean"))
    else:
        if not pa.types.is_dictionary(arr.type):
            arr = pc.dictionary_encode(arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0))
        out = pa.table({"c": arr}).to_pandas()["c"]
        if not isinstance(out.dtype, pd.CategoricalDtype):  # all-null input comes back as object
            out = out.astype("category")
    return pd.Series(out.array, index=index)


def _null_column(name: str, n: int, index: pd.Index) -> pd.Series:
    if name == "is_sandbox":
        return pd.Series(pd.array([pd.NA] * n, dtype="boolean"), index=index)
    return pd.Series(pd.Categorical([None] * n), index=index)


def with_kubernetes(events: pd.DataFrame) -> pd.DataFrame:
    """Make sure ``pod_namespace``, ``pod_name``, ``container_name``, ``image_name``
    and ``is_sandbox`` are there and filled.

    Values already in those columns (schema v2, or the file reader, which derives
    them while reading) are kept; missing ones are derived from ``annotations``
    when the frame has that column (hand-made frames, version-1 files). Also adds
    ``annotated_manager`` (see :func:`with_manager`) when it derives.
    """
    n = len(events)
    present = {c: events[c] for c in KUBERNETES_COLUMNS if c in events.columns}
    need = [c for c in KUBERNETES_COLUMNS if c not in present or present[c].isna().any()]
    if not need:
        return events
    if "annotations" not in events.columns or not n or events["annotations"].isna().all():
        return events.assign(**{c: _null_column(c, n, events.index) for c in KUBERNETES_COLUMNS if c not in present})
    derived = annotation_arrays(_arrow(events["annotations"], MAP_TYPE))
    new = {}
    for c in need + ([ANNOTATED_MANAGER] if ANNOTATED_MANAGER not in events.columns else []):
        value = _to_series(derived[c], events.index)
        if c in present:
            old = present[c]
            if isinstance(old.dtype, pd.CategoricalDtype) or isinstance(value.dtype, pd.CategoricalDtype):
                old, value = old.astype(object), value.astype(object)
            value = old.where(old.notna(), value)
            if c != "is_sandbox":
                value = value.astype("category")
            else:
                value = value.astype("boolean")
        new[c] = value
    return events.assign(**new)


def with_command(events: pd.DataFrame) -> pd.DataFrame:
    """Add ``command``: the container's argv as one string (for grouping and display)."""
    if "command" in events.columns:
        return events
    if "process_args" in events.columns and len(events):
        try:
            arr = joined_args(_arrow(events["process_args"], pa.list_(pa.string())))
        except UnicodeEncodeError:  # an argument with bytes that were not UTF-8: Arrow refuses it
            return events.assign(command=text_series([_joined(a) for a in events["process_args"]], events.index))
        return events.assign(command=_to_series(arr, events.index))
    return events.assign(command=pd.Categorical([None] * len(events)))


def _joined(args) -> Optional[str]:
    """What :func:`joined_args` gives for one argv: null if it or an item is null."""
    if not isinstance(args, (list, tuple, np.ndarray)) or any(not isinstance(a, str) for a in args):
        return None
    return " ".join(args)


def manager_from_root(root: Optional[str], annotated: Optional[str] = None) -> str:
    """Who called runc, for a recording that did not say (schema version 1).

    The recorder's own rule (:func:`runctrace.runc.enrich.manager_of`: ``/run/docker/``
    is docker, a ``/containerd/`` root is containerd, anything else by hand), after
    two things only a version-1 reader has to look at: the manager a spec's
    annotations name (``cri-o``; podman's ``libpod`` is ``conmon``, as the recorder
    calls podman's containers) and a root with ``crio`` in its path.
    """
    if annotated:
        return annotated
    if root and ("crio" in root or "cri-o" in root):
        return "cri-o"
    return manager_of(root, None, None)


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
    if not all(safetext.is_clean(v) for v in labels):  # see text_series
        return pd.Series(labels[cat_codes], index=frame.index, dtype=object)
    return pd.Series(pd.Categorical.from_codes(cat_codes, categories=pd.Index(labels)), index=frame.index)


_CODE_LIMIT = 1 << 62


def combined_codes(frame: pd.DataFrame, columns: Sequence[str]):
    """One integer per distinct combination of ``columns``, and those combinations.

    Returns ``(codes, uniques)``: ``codes[i]`` numbers row ``i``'s combination
    (0, 1, ... in order of first appearance) and row ``c`` of the ``uniques`` frame
    holds combination ``c``. Missing values are a value of their own. Works on
    category codes (or one hash per non-categorical column), then int64
    arithmetic; the running code is renumbered whenever the next multiplication
    could overflow.
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
    """Make sure ``manager`` is filled: containerd, docker, cri-o, conmon or by-hand.

    The recorder's ``manager`` column (schema v2) wins where it is set; elsewhere
    :func:`manager_from_root` decides, once per distinct (root, annotated manager).
    """
    if "manager" in events.columns and not events["manager"].isna().any():
        return events
    if not len(events):
        return events if "manager" in events.columns else events.assign(manager=pd.Categorical([]))
    events = with_kubernetes(events)
    cols = [c for c in ("manager", ANNOTATED_MANAGER, "runtime_root") if c in events.columns]

    def decide(*values):
        given = dict(zip(cols, values))
        return given.get("manager") or manager_from_root(given.get("runtime_root"), given.get(ANNOTATED_MANAGER))

    return events.assign(manager=map_distinct(events, cols, decide))


def derive_all(events: pd.DataFrame) -> pd.DataFrame:
    """Every column the churn functions group by: Kubernetes fields, ``command``, ``manager``."""
    return events.pipe(with_kubernetes).pipe(with_command).pipe(with_manager)
