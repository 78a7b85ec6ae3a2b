"""Pairing: each container's start matched with its remove, one row per lifetime.

:func:`lifetimes` is the step from events to lifetimes that every summary in
:mod:`runctrace.analysis.churn` starts from. It works in two parts: :func:`pair`
finds, with array operations only, which event starts and which ends each
lifetime; :func:`lifetime_frame` then builds the frame from those positions.

Vocabulary used throughout
--------------------------
*start*
    an ``add`` event (runc created the container) or an ``initial`` one (the
    container was already running when the recorder started; its real start is
    earlier, so its lifetime is a lower bound).
*status* of a lifetime
    ``ended``: start and remove both seen. ``running``: no remove before the data
    ends (kept, not dropped: it is still running, or the recorder stopped first).
    ``lost``: the same container ID started again with no remove in between, so its
    remove was missed; ``end`` is then the latest it can have ended. ``orphan``: a
    remove with no start in the data (the container started before the recording,
    or before ``--since``).
*complete* lifetime
    ``ended`` and started by an ``add``: both ends observed. Only these enter
    lifetime statistics; the others would bias them (toward short for ``initial``,
    unknown for the rest).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

# The event types that start a lifetime, which are also the values of its
# ``start_type`` column.
START_TYPES = ("add", "initial")
STATUSES = ("ended", "running", "lost", "orphan")
_ENDED, _RUNNING, _LOST, _ORPHAN = range(len(STATUSES))
NAT = np.iinfo(np.int64).min  # numpy's NaT as int64

LIFETIME_COLUMNS = [
    "host", "container_id", "container_pid", "start", "end", "lifetime_s",
    "status", "start_type", "exit_code", "signal",
]
# Columns of an event that describe the event, not the container.
_EVENT_ONLY = {"time", "time_ns", "type", "exit_code", "signal", "error", "lifetime_ns"}

# Above this many runs of hosts, rows are interleaved rather than grouped by host,
# and numbering values host by host would cost a Python step per run.
_MAX_HOST_RUNS = 10_000


# ---------------------------------------------------------------- array helpers
# Shared with :mod:`runctrace.analysis.churn`.


def asi8(series: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch as int64 (NaT -> :data:`NAT`)."""
    if not isinstance(series.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(series.dtype):
        series = pd.to_datetime(series, utc=True)
    return series.dt.as_unit("ns").array.asi8


def datetimes(ns: np.ndarray) -> pd.Series:
    """Nanoseconds since the epoch as UTC timestamps (:data:`NAT` -> NaT)."""
    return pd.Series(ns.astype(np.int64).view("M8[ns]")).dt.tz_localize("UTC")


def bools(mask) -> np.ndarray:
    """A boolean mask as a numpy array, missing values as False."""
    return np.asarray(pd.Series(mask).fillna(False).to_numpy(dtype=bool))


def codes(series: pd.Series):
    """``(integer codes, how many distinct values)``; -1 for missing."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(dtype=np.int64), len(series.cat.categories)
    out, uniques = pd.factorize(series)
    return out.astype(np.int64), len(uniques)


def codes_within(values: pd.Series, groups: np.ndarray) -> np.ndarray:
    """Integer codes of ``values`` that are distinct per (group, value); -1 for missing.

    Values are numbered group by group (groups are hosts here): events and
    lifetimes come in per-host runs, and a hash table of one host's values stays in
    cache where one of all hosts' values does not. All runs of a group share one
    numbering, so a container added in one file and removed in the next still
    pairs. When groups are interleaved row by row, one global numbering (combined
    with the group) is used instead.
    """
    n = len(values)
    groups = np.asarray(groups)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if n else np.zeros(0, np.int64)
    if len(starts) > _MAX_HOST_RUNS:
        found, uniq = pd.factorize(values)
        return np.where(found >= 0, (groups.astype(np.int64) + 1) * (len(uniq) + 1) + found, -1)
    ends = np.r_[starts[1:], n]
    out = np.empty(n, dtype=np.int64)
    offset = 0
    runs_of = pd.Series(np.arange(len(starts))).groupby(groups[starts]).indices  # group -> its runs
    for runs in runs_of.values():  # one pass per host, not per row
        if len(runs) == 1:
            idx = slice(starts[runs[0]], ends[runs[0]])
            found, uniq = pd.factorize(values.iloc[idx])
        else:
            idx = np.concatenate([np.arange(starts[r], ends[r]) for r in runs])
            found, uniq = pd.factorize(values.take(idx))
        out[idx] = np.where(found >= 0, found + offset, -1)
        offset += len(uniq)
    return out


def _take(series: pd.Series, idx: np.ndarray) -> pd.Series:
    """``series`` at positions ``idx``, with -1 giving a missing value. A column of
    objects stays one: it may hold surrogate escapes, which inferred strings refuse."""
    taken = pd.api.extensions.take(series.array, idx, allow_fill=True)
    return pd.Series(taken, dtype=object if series.dtype == object else None)


# ---------------------------------------------------------------- pairing


class Pairs(NamedTuple):
    """Where each lifetime's ends are, as arrays of one entry per lifetime: first
    those with a start (in container order), then the orphan removes."""

    start_event: np.ndarray  # row of the start event in the events, -1 for none
    end_event: np.ndarray  # row of the remove, -1 for none (running, lost)
    start_ns: np.ndarray  # NAT where unknown
    end_ns: np.ndarray  # NAT where unknown; for ``lost``, the next start
    status: np.ndarray  # index into STATUSES
    start_kind: np.ndarray  # index into START_TYPES, -1 for an orphan
    orphans: int  # how many of the lifetimes, at the end, are orphan removes


def lifetimes(events: pd.DataFrame) -> pd.DataFrame:
    """One row per container lifetime: each start matched with its remove
    (:func:`pair`, then :func:`lifetime_frame`).

    Columns: :data:`LIFETIME_COLUMNS` first (``start``/``end`` are UTC timestamps,
    NaT when unknown; ``lifetime_s`` for ``ended``, and for ``orphan`` when the
    recorder measured it, ``lifetime_ns``), then every other column of
    the events describing the container (``command``, ``pod_namespace``, ``image_name``,
    ``manager``, ...), taken from the start event, or from the remove when the start
    lacks it. Rows are grouped by container, not sorted by time.
    """
    attrs = [c for c in events.columns if c not in _EVENT_ONLY and c not in LIFETIME_COLUMNS]
    pairs = pair(events)
    if pairs is None:
        return _empty_lifetimes(events, attrs)
    return lifetime_frame(events, pairs, attrs)


def pair(events: pd.DataFrame) -> "Pairs | None":
    """Which event starts and which ends each lifetime (None: no start nor remove).

    How: events are sorted by (host, container_id, time) and each remove is paired
    with the event just before it if that is a start of the same container ID on
    the same host. One sort and a few array comparisons; no join, no loop.

    - The key is (host, container_id), not the PID: runc refuses a second container
      with a live ID, so a reused ID (``docker restart`` reuses it) is a new lifetime
      only after the previous one ended, which is exactly what the sort sees.
    - An ``initial`` event right after a start of the same container (and same PID)
      is the same container seen again by a restarted recorder: it is merged, not
      counted twice.
    - Ties in time put the start first, so a container that lives zero nanoseconds
      still pairs.
    """
    types = events["type"]
    is_remove_all = bools(types == "remove")
    keep = np.flatnonzero(bools(types.isin(START_TYPES)) | is_remove_all)
    if not len(keep):
        return None
    t = _event_ns(events)[keep]
    rem = is_remove_all[keep]
    key, order = _pairing_order(events, keep, t, rem)
    pos, k, t, rem = keep[order], key[order], t[order], rem[order]
    initial = bools(types == "initial")[pos]
    pid = (
        events["container_pid"].to_numpy(dtype="float64", na_value=np.nan)[pos]
        if "container_pid" in events.columns else np.full(len(pos), np.nan)
    )

    same_prev = _shifted(k[1:] == k[:-1], len(k), 1)
    prev_start = _shifted(~rem[:-1], len(k), 1)
    prev_pid = np.r_[np.nan, pid[:-1]]
    pid_match = (pid == prev_pid) | np.isnan(pid) | np.isnan(prev_pid)
    seen_again = initial & same_prev & prev_start & pid_match
    if seen_again.any():
        sel = ~seen_again
        pos, k, t, rem, initial = pos[sel], k[sel], t[sel], rem[sel], initial[sel]
        same_prev = _shifted(k[1:] == k[:-1], len(k), 1)

    n = len(k)
    same_next = _shifted(same_prev[1:], n, 0)
    next_rem = _shifted(rem[1:], n, 0)
    prev_is_start = _shifted(~rem[:-1], n, 1)

    s_idx = np.flatnonzero(~rem)
    ended = same_next[s_idx] & next_rem[s_idx]
    lost = same_next[s_idx] & ~next_rem[s_idx]
    o_idx = np.flatnonzero(rem & ~(same_prev & prev_is_start))
    nxt = np.minimum(s_idx + 1, n - 1)
    none = np.full(len(o_idx), -1)
    return Pairs(
        start_event=np.concatenate([pos[s_idx], none]),
        end_event=np.concatenate([np.where(ended, pos[nxt], -1), pos[o_idx]]),
        start_ns=np.concatenate([t[s_idx], np.full(len(o_idx), NAT)]),
        end_ns=np.concatenate([np.where(ended | lost, t[nxt], NAT), t[o_idx]]),
        status=np.concatenate([np.where(ended, _ENDED, np.where(lost, _LOST, _RUNNING)), np.full(len(o_idx), _ORPHAN)]),
        start_kind=np.concatenate([initial[s_idx].astype(np.int64), none]),
        orphans=len(o_idx),
    )


def lifetime_frame(events: pd.DataFrame, pairs: Pairs, attrs: Sequence[str]) -> pd.DataFrame:
    """The lifetimes :func:`pair` found, as a frame (columns: see :func:`lifetimes`)."""
    a_idx, r_idx = pairs.start_event, pairs.end_event
    out = {}
    for column in ["host", "container_id", "container_pid", *attrs]:
        if column not in events.columns:
            continue
        col = events[column]
        value = _take(col, a_idx)
        missing = col.isna().to_numpy()
        # Fill from the remove only where the start lacks a value the remove has
        # (e.g. the spec was unreadable at start); take just those rows.
        need = np.flatnonzero(value.isna().to_numpy() & (r_idx >= 0))
        need = need[~missing[r_idx[need]]]
        if len(need):
            value.iloc[need] = _take(col, r_idx[need]).to_numpy()
        out[column] = value
    out["start"] = datetimes(pairs.start_ns)
    out["end"] = datetimes(pairs.end_ns)
    lifetime = np.where(pairs.status == _ENDED, (pairs.end_ns - pairs.start_ns) / 1e9, np.nan)
    if "lifetime_ns" in events.columns and pairs.orphans:
        # An orphan's start is not in the data, but the recorder measured its
        # lifetime (schema v2): keep it, so restart loops and --by tables see it.
        orphans = slice(len(lifetime) - pairs.orphans, None)
        lifetime[orphans] = events["lifetime_ns"].to_numpy(dtype="float64", na_value=np.nan)[r_idx[orphans]] / 1e9
    out["lifetime_s"] = lifetime
    out["status"] = pd.Categorical.from_codes(pairs.status, categories=list(STATUSES))
    out["start_type"] = pd.Categorical.from_codes(pairs.start_kind, categories=list(START_TYPES))
    for column in ("exit_code", "signal"):
        out[column] = (
            _take(events[column], r_idx) if column in events.columns else pd.Series(pd.array([pd.NA] * len(r_idx), dtype="Int32"))
        )
    frame = pd.DataFrame(out)
    return frame[[c for c in LIFETIME_COLUMNS if c in frame.columns] + [c for c in attrs if c in frame.columns]]


def _shifted(values: np.ndarray, n: int, at: int) -> np.ndarray:
    """``values`` (n - 1 booleans) placed at ``at`` (0 or 1) in n, False elsewhere:
    each row's neighbour after (``at=0``) or before (``at=1``) it."""
    out = np.zeros(n, bool)
    out[at:at + len(values)] = values
    return out


def _event_ns(events: pd.DataFrame) -> np.ndarray:
    if "time_ns" in events.columns:
        return events["time_ns"].to_numpy(dtype=np.int64)
    return asi8(events["time"])


def _container_keys(events: pd.DataFrame) -> np.ndarray:
    """One int64 per distinct (host, container_id), for every event."""
    host, _ = codes(events["host"])
    return codes_within(events["container_id"], host)


def _pairing_order(events: pd.DataFrame, keep: np.ndarray, t: np.ndarray, rem: np.ndarray):
    """The container key of rows ``keep`` and the order sorting them by (key, time,
    start before remove).

    Recordings are written in time order, so usually a stable sort on the key alone
    leaves each container's events in time order already; that is checked (one
    vectorised comparison) and a full ``lexsort`` runs only when it is not so.
    """
    key = _container_keys(events)[keep]
    t2 = (t - (t.min() if len(t) else 0)) * 2 + rem  # time, then start before remove
    order = np.argsort(key, kind="stable")
    k, tt = key[order], t2[order]
    same = k[1:] == k[:-1]
    if not np.all(tt[1:][same] >= tt[:-1][same]):
        order = np.lexsort((t2, key))
    return key, order


def _empty_lifetimes(events: pd.DataFrame, attrs: Sequence[str]) -> pd.DataFrame:
    empty = {
        "host": pd.Series([], dtype="category"),
        "container_id": pd.Series([], dtype="str" if pd.__version__ >= "3" else object),
        "container_pid": pd.Series([], dtype="Int32"),
        "start": datetimes(np.array([], np.int64)),
        "end": datetimes(np.array([], np.int64)),
        "lifetime_s": pd.Series([], dtype="float64"),
        "status": pd.Categorical([], categories=list(STATUSES)),
        "start_type": pd.Categorical([], categories=list(START_TYPES)),
        "exit_code": pd.Series([], dtype="Int32"),
        "signal": pd.Series([], dtype="Int32"),
    }
    for c in attrs:
        empty[c] = events[c].iloc[:0].reset_index(drop=True)
    return pd.DataFrame(empty)


# ---------------------------------------------------------------- selections


def orphan_removes(lives: pd.DataFrame) -> pd.DataFrame:
    """Removes with no start in the data (status ``orphan``)."""
    return lives[lives["status"] == "orphan"]


def complete(lives: pd.DataFrame) -> pd.DataFrame:
    """Lifetimes with both ends observed: the only ones lifetime statistics use."""
    return lives[complete_mask(lives)]


def complete_mask(lives: pd.DataFrame) -> np.ndarray:
    """Which lifetimes are complete (``ended`` and started by an ``add``), as a bool array."""
    return bools(lives["status"] == "ended") & bools(lives["start_type"] == "add")


def has_remove(lives: pd.DataFrame) -> np.ndarray:
    """Which lifetimes' remove is in the data (``ended`` or ``orphan``), as a bool array."""
    return bools(lives["status"].isin(["ended", "orphan"]))


__all__ = [
    "LIFETIME_COLUMNS", "START_TYPES", "STATUSES", "Pairs", "codes_within", "complete", "complete_mask",
    "lifetime_frame", "lifetimes", "orphan_removes", "pair",
]
