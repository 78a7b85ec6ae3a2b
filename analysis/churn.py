"""Container churn: pure ``DataFrame -> DataFrame`` functions that chain with ``.pipe()``.

Events in, one row per container lifetime (:func:`lifetimes`, from
:mod:`runctrace.analysis.pairing`, which also defines the vocabulary: *start*,
*status*, *complete*), then summaries of those lifetimes::

    from runctrace.analysis import io, fields, churn

    events = io.load_events("node1.parquet")
    lives = events.pipe(fields.derive_all).pipe(churn.lifetimes)

    lives.pipe(churn.churn_rates, "1min")        # starts and stops per interval
    lives.pipe(churn.concurrency, "1min")        # containers running, per interval
    lives.pipe(churn.lifetime_quantiles)         # p50 / p90 / p99 / max
    lives.pipe(churn.short_lived, 10)            # lifetimes under 10 s
    lives.pipe(churn.exit_summary)               # exit codes and signals
    lives.pipe(churn.top_churners, by="image")   # who starts the most containers
    lives.pipe(churn.restart_loops, threshold=5, window="1h")

Every function is vectorised (numpy / pandas / Arrow kernels): none loops in Python
per event or per lifetime, so the cost grows with the number of rows only through
array operations.
"""

from __future__ import annotations

import re
import signal as _signal
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from . import fields
# Pairing is its own module; what callers use as ``churn.lifetimes`` etc. is here too.
from .pairing import (
    LIFETIME_COLUMNS, NAT, asi8, bools, codes, codes_within, complete, complete_mask, datetimes, has_remove,
    lifetimes, orphan_removes,
)

# --by choices -> grouping columns.
BY_COLUMNS = {
    "image": ["image_name"],
    "pod": ["pod_namespace", "pod_name"],
    "namespace": ["pod_namespace"],
    "manager": ["manager"],
    "host": ["host"],
    "command": ["command"],
}

Interval = Union[str, float, int, pd.Timedelta, None]

# ---------------------------------------------------------------- time helpers

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "us": 1e-6, "ns": 1e-9,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0, "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}


def parse_duration(value: Interval) -> pd.Timedelta:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"2d"``, ``"1h30min"``, a number of seconds, or a Timedelta."""
    if isinstance(value, pd.Timedelta):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return pd.Timedelta(seconds=float(value))
    text = str(value)
    m = _DURATION.match(text)
    if m and m.group(2).lower() in _UNITS:
        return pd.Timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    try:
        td = pd.Timedelta(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a duration (try 30s, 5m, 1h, 2d)") from None
    return td


def is_duration(text: str) -> bool:
    """Whether ``text`` is a number with a unit (``30m``, ``2h``): a duration, not a time."""
    m = _DURATION.match(text)
    return bool(m and m.group(2))


_NICE_STEPS = [pd.Timedelta(s) for s in (
    "1s", "5s", "10s", "30s", "1min", "5min", "10min", "15min", "30min", "1h", "3h", "6h", "12h", "1D", "7D",
)]


def auto_interval(lives: pd.DataFrame, buckets: int = 120) -> pd.Timedelta:
    """The smallest "nice" step that cuts the data's time span into at most ``buckets``."""
    lo, hi = _span_ns(lives)
    span = pd.Timedelta(int(hi - lo), unit="ns") if lo is not None else pd.Timedelta(0)
    for step in _NICE_STEPS:
        if span / step <= buckets:
            return step
    return pd.Timedelta(days=max(1, int(np.ceil(span / pd.Timedelta(days=1) / buckets))))


def _step_ns(interval: Interval, lives: pd.DataFrame) -> int:
    step = auto_interval(lives) if interval is None or interval == "auto" else parse_duration(interval)
    ns = int(step.value)
    if ns <= 0:
        raise ValueError(f"interval must be positive, not {interval!r}")
    return ns


def _span_ns(lives: pd.DataFrame):
    if lives.empty:
        return None, None
    s, e = asi8(lives["start"]), asi8(lives["end"])
    known = np.concatenate([s[s != NAT], e[e != NAT]])
    if not len(known):
        return None, None
    return int(known.min()), int(known.max())


# ---------------------------------------------------------------- over time


def _bucket_range(lives: pd.DataFrame, step: int):
    lo, hi = _span_ns(lives)
    if lo is None:
        return 0, 0
    b0, b1 = lo // step, hi // step
    if b1 - b0 + 1 > 5_000_000:
        raise ValueError(
            f"an interval of {pd.Timedelta(step, unit='ns')} cuts this data into {b1 - b0 + 1} pieces; "
            "choose a longer interval"
        )
    return b0, b1 - b0 + 1


def _time_index(b0: int, nb: int, step: int) -> pd.DatetimeIndex:
    ns = (np.arange(nb, dtype=np.int64) + b0) * step
    return pd.DatetimeIndex(ns.view("M8[ns]"), name="time").tz_localize("UTC")


def churn_rates(lives: pd.DataFrame, interval: Interval = None) -> pd.DataFrame:
    """Starts and stops per interval (index: interval start, UTC).

    ``starts`` counts ``add`` events only: an ``initial`` event is the recorder
    noticing a container, not the container starting. ``stops`` counts removes
    (paired or orphan). Every interval in the data's span appears, zeros included,
    aligned to the epoch so two frames with the same interval line up.
    """
    step = _step_ns(interval, lives)
    b0, nb = _bucket_range(lives, step)
    s = asi8(lives["start"])[bools(lives["start_type"] == "add")]
    e = asi8(lives["end"])[has_remove(lives)]
    starts = np.bincount(s // step - b0, minlength=nb) if nb else np.zeros(0, np.int64)
    stops = np.bincount(e // step - b0, minlength=nb) if nb else np.zeros(0, np.int64)
    return pd.DataFrame({"starts": starts[:nb], "stops": stops[:nb]}, index=_time_index(b0, nb, step))


def concurrency(lives: pd.DataFrame, interval: Interval = None) -> pd.DataFrame:
    """How many containers run, per interval: ``running_max``, ``running_min`` and
    ``running_end`` (at the interval's end). Index: interval start, UTC.

    The count steps +1 at each start and -1 at each end. Orphan removes count as
    running from the first moment of the data (they started before it); ``lost``
    lifetimes end at the latest time they can have ended; ``running`` ones never end.
    At equal times ends are applied before starts, so a replacement that starts the
    instant its predecessor ends does not look like a peak.
    """
    step = _step_ns(interval, lives)
    b0, nb = _bucket_range(lives, step)
    cols = ["running_max", "running_min", "running_end"]
    if not nb:
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in cols}, index=_time_index(0, 0, step))
    origin = _span_ns(lives)[0]
    s, e = asi8(lives["start"]), asi8(lives["end"])
    s = np.where(s == NAT, origin, s)
    e = e[e != NAT]
    # One sorted array of (time, kind): time*2, +1 for a start, so ends sort first.
    x = np.concatenate([(s - origin) * 2 + 1, (e - origin) * 2])
    x.sort()
    running = np.cumsum((x & 1) * 2 - 1)
    bucket = ((x >> 1) + origin) // step - b0
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    last = np.r_[first[1:] - 1, len(x) - 1]
    ids = bucket[first]
    hi = np.maximum.reduceat(running, first)
    lo = np.minimum.reduceat(running, first)
    end = np.full(nb, -1, np.int64)
    end[ids] = running[last]
    has = np.zeros(nb, bool)
    has[ids] = True
    # Forward-fill intervals with no event: the count holds.
    fill_from = np.maximum.accumulate(np.where(has, np.arange(nb), 0))
    end = end[fill_from]
    before = np.r_[0, end[:-1]]  # the count as each interval begins
    rmax, rmin = before.copy(), before.copy()
    rmax[ids] = np.maximum(hi, np.where(ids > 0, before[ids], hi))
    rmin[ids] = np.minimum(lo, np.where(ids > 0, before[ids], lo))
    return pd.DataFrame({"running_max": rmax, "running_min": rmin, "running_end": end},
                        index=_time_index(b0, nb, step))


# ---------------------------------------------------------------- lifetimes


def lifetime_quantiles(
    lives: pd.DataFrame, by: Optional[Sequence[str]] = None, quantiles: Sequence[float] = (0.5, 0.9, 0.99)
) -> pd.DataFrame:
    """Lifetime quantiles in seconds over complete lifetimes: ``containers``, ``p50``,
    ``p90``, ``p99``, ``max`` (one row, or one per group of ``by`` columns)."""
    mask = complete_mask(lives)
    names = [f"p{int(round(q * 100))}" if q * 100 == int(q * 100) else f"p{q * 100:g}" for q in quantiles]
    if by is None:
        vals = lives["lifetime_s"].to_numpy(dtype=float)[mask]
        row = {"containers": len(vals)}
        qs = np.quantile(vals, quantiles) if len(vals) else [np.nan] * len(quantiles)
        row.update(dict(zip(names, qs)))
        row["max"] = vals.max() if len(vals) else np.nan
        return pd.DataFrame([row])
    by = list(by)
    done = lives.loc[mask, by + ["lifetime_s"]]
    done = done.assign(**{c: fields.key_form(done[c]) for c in by})
    g = done.groupby(by, observed=True, dropna=False)["lifetime_s"]
    q = g.quantile(list(quantiles)).unstack()
    q.columns = names
    out = pd.concat([g.size().rename("containers"), q, g.max().rename("max")], axis=1).reset_index()
    return out.assign(**{c: fields.original_form(out[c]) for c in by if lives[c].dtype == object})


def short_lived(lives: pd.DataFrame, threshold_s: float = 10.0) -> pd.DataFrame:
    """Complete lifetimes shorter than ``threshold_s`` seconds.

    Why it matters: a container that lives seconds is a probe, a job step, or a
    crash; thousands of them cost the node (image mounts, cgroups, network setup)
    far more than their run time suggests.
    """
    mask = complete_mask(lives) & (lives["lifetime_s"].to_numpy(dtype=float) < float(threshold_s))
    return lives[mask]


def signal_name(number) -> Optional[str]:
    try:
        return _signal.Signals(int(number)).name
    except (ValueError, TypeError):
        return None


def outcome_label(exit_code, sig) -> str:
    if sig is not None and not pd.isna(sig):
        name = signal_name(sig)
        return f"signal {int(sig)}" + (f" ({name})" if name else "")
    if exit_code is not None and not pd.isna(exit_code):
        return f"exit {int(exit_code)}"
    return "unknown"


def exit_summary(lives: pd.DataFrame) -> pd.DataFrame:
    """How containers ended: one row per (exit code, signal), most common first.

    Columns: ``outcome`` (``exit 0``, ``signal 9 (SIGKILL)``, ``unknown`` when the
    recorder could not read the exit status), ``exit_code``, ``signal``,
    ``containers``, ``share`` (of all ended containers).
    """
    ended = lives.loc[has_remove(lives), ["exit_code", "signal"]]
    cols = ["outcome", "exit_code", "signal", "containers", "share"]
    if ended.empty:
        return pd.DataFrame({c: [] for c in cols})
    # One int64 per (exit code, signal) and one hash count: a groupby on two nullable
    # columns is several times slower on millions of rows.
    code = ended["exit_code"].to_numpy(dtype="float64", na_value=np.nan)
    sig = ended["signal"].to_numpy(dtype="float64", na_value=np.nan)
    combined = (np.nan_to_num(code, nan=-(1 << 31)).astype(np.int64) << 32) + np.nan_to_num(sig, nan=-1).astype(np.int64) + 1
    counts = pd.Series(combined).value_counts()
    keys = counts.index.to_numpy(dtype=np.int64)
    code_of, sig_of = keys >> 32, (keys & 0xFFFFFFFF) - 1
    g = pd.DataFrame({
        "exit_code": pd.array(np.where(code_of == -(1 << 31), 0, code_of), dtype="Int32"),
        "signal": pd.array(np.where(sig_of < 0, 0, sig_of), dtype="Int32"),
        "containers": counts.to_numpy(),
    })
    g.loc[code_of == -(1 << 31), "exit_code"] = pd.NA
    g.loc[sig_of < 0, "signal"] = pd.NA
    g = g.sort_values(["containers", "exit_code"], ascending=[False, True], kind="stable", ignore_index=True)
    g["outcome"] = [outcome_label(c, s) for c, s in zip(g["exit_code"], g["signal"])]  # one per distinct outcome
    g["share"] = g["containers"] / len(ended)
    return g[cols]


# ---------------------------------------------------------------- who


def group_label(frame: pd.DataFrame, columns: Sequence[str], missing: str = "-", none: str = "(none)") -> pd.Series:
    """``a/b`` labels for grouped rows (small frames: one per group). A missing part
    shows as ``-``; a group with every part missing (e.g. the pod of a container not
    started by Kubernetes) as ``(none)``."""
    parts = [frame[c].astype(object) for c in columns]
    label = None
    for p in parts:
        text = np.array([missing if pd.isna(v) else str(v) for v in p], dtype=object)
        label = text if label is None else label + "/" + text
    all_missing = np.logical_and.reduce([p.isna().to_numpy() for p in parts]) if parts else np.zeros(len(frame), bool)
    return fields.text_series(np.where(all_missing, none, label), frame.index)


def top_churners(
    lives: pd.DataFrame, by: str = "image", n: Optional[int] = 10, short_lived_s: float = 10.0
) -> pd.DataFrame:
    """Who starts and stops the most containers, grouped ``by`` one of :data:`BY_COLUMNS`.

    Columns: ``group`` (label; ``(none)`` where the field is unknown, e.g. the image
    of a container not started by Kubernetes), the grouping columns, ``containers``,
    ``starts``, ``stops``, ``running`` (at the end of the data), ``short_lived``,
    ``failed`` (ended with a non-zero exit or a signal), ``p50_lifetime_s``.
    Sorted by starts + stops, highest first; ``n=None`` keeps every group.
    """
    if by not in BY_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(BY_COLUMNS)}, not {by!r}")
    keys = BY_COLUMNS[by]
    if by == "manager" and "manager" not in lives.columns:
        lives = fields.with_manager(lives)
    for k in keys:
        if k not in lives.columns:
            lives = lives.assign(**{k: pd.Categorical([None] * len(lives))})
    removed = has_remove(lives)
    done = complete_mask(lives)
    exit_code = lives["exit_code"].to_numpy(dtype="float64", na_value=np.nan)
    sig = lives["signal"].to_numpy(dtype="float64", na_value=np.nan)
    metrics = pd.DataFrame({
        "containers": np.ones(len(lives), np.int64),
        "starts": bools(lives["start_type"] == "add"),
        "stops": removed,
        "running": bools(lives["status"] == "running"),
        "short_lived": done & (lives["lifetime_s"].to_numpy(dtype=float) < short_lived_s),
        "failed": removed & (((exit_code != 0) & ~np.isnan(exit_code)) | ~np.isnan(sig)),
        "lifetime": np.where(done, lives["lifetime_s"].to_numpy(dtype=float), np.nan),
    }, index=lives.index)
    for k in keys:
        metrics[k] = fields.key_form(lives[k])
    g = metrics.groupby(keys, observed=True, dropna=False)
    counts = g[["containers", "starts", "stops", "running", "short_lived", "failed"]].sum()
    counts["p50_lifetime_s"] = g["lifetime"].median()
    counts = counts.reset_index()
    for k in keys:
        if lives[k].dtype == object:
            counts[k] = fields.original_form(counts[k])
    counts = counts.assign(_churn=counts["starts"] + counts["stops"])
    counts = counts.sort_values(["_churn", "containers"], ascending=False, kind="stable").drop(columns="_churn")
    if n is not None:
        counts = counts.head(n)
    counts.insert(0, "group", group_label(counts, keys))
    return counts.reset_index(drop=True)



# ---------------------------------------------------------------- restart loops

K8S_KEY = ["pod_namespace", "pod_name", "container_name"]
HOST_KEY = ["host", "manager", "hostname", "command"]
_LOOP_COLUMNS = [
    "logical_container", "kind", *K8S_KEY, *HOST_KEY, "image_name", "restarts", "max_restarts_in_window",
    "window_start", "window_end", "first_start", "last_start", "p50_lifetime_s",
    "last_exit_code", "last_signal", "last_outcome", "last_status",
]


def _logical_keys(lives: pd.DataFrame, is_k8s: np.ndarray) -> np.ndarray:
    """An int64 per lifetime naming its logical container (see :func:`restart_loops`).

    Built from per-host codes and category codes by arithmetic, with no global hash
    table: pods and hostnames are numbered within each host (a pod's restarts all
    happen on its node), then combined with the small categorical columns. Keys of
    Kubernetes containers are even, the others odd, so the two kinds never meet.
    """
    host, _ = codes(lives["host"])
    parts_k8s = [codes_within(lives["pod_name"], host), lives["pod_namespace"], lives["container_name"]]
    parts_host = [codes_within(lives["hostname"], host) if "hostname" in lives else np.full(len(lives), -1),
                  host, lives["manager"], lives["command"]]

    def combine(parts) -> np.ndarray:
        key = np.zeros(len(lives), dtype=np.int64)
        span = 1
        for part in parts:
            if isinstance(part, np.ndarray):
                c, width = part, int(part.max()) + 2 if len(part) else 1
            else:
                c, width = codes(part)
                width += 1
            if span * width >= 1 << 61:  # renumber before the product could overflow
                key, uniq = pd.factorize(key)
                key, span = key.astype(np.int64), len(uniq) + 1
            key = key * width + (c + 1)
            span *= width
        return key

    return np.where(is_k8s, combine(parts_k8s) * 2, combine(parts_host) * 2 + 1)


class Windows(NamedTuple):
    """The densest window of each group (see :func:`densest_windows`)."""

    count: np.ndarray  # the most starts within one window
    first: np.ndarray  # position of that window's first start
    last: np.ndarray  # position of its last start


def densest_windows(times_ns: np.ndarray, sizes: np.ndarray, window: pd.Timedelta) -> Windows:
    """For each group of times, the window of length ``window`` holding the most.

    ``times_ns``: the groups laid end to end, each sorted and ``sizes[i]`` long
    (every size at least 1). A window starts at one of the group's times ``t`` and
    holds every time up to ``t + window`` inclusive; times are compared at
    millisecond precision. Of windows holding equally many, the earliest is given.
    Positions are into ``times_ns``.

    All groups in one ``searchsorted``, with no loop per group: each group is
    shifted onto its own stretch of one axis, separated from the next by more than
    the window, so no window reaches into another group.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if not len(sizes):
        empty = np.zeros(0, np.int64)
        return Windows(empty, empty, empty)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    t_ms = np.asarray(times_ns, dtype=np.int64) // 1_000_000
    w_ms = max(int(window.value // 1_000_000), 0)
    g_min = t_ms[first]
    g_range = np.maximum.reduceat(t_ms, first) - g_min
    offset = np.r_[0, np.cumsum(g_range + w_ms + 1)[:-1]]
    axis = t_ms - np.repeat(g_min, sizes) + np.repeat(offset, sizes)
    reach = np.searchsorted(axis, axis + w_ms, side="right")  # one past each window's last
    in_window = reach - np.arange(len(axis))
    best = np.maximum.reduceat(in_window, first)
    # The densest window's first start, per group: the first row reaching the most.
    at_best = np.flatnonzero(in_window == np.repeat(best, sizes))
    group = np.repeat(np.arange(len(sizes)), sizes)[at_best]
    best_pos = at_best[np.r_[True, group[1:] != group[:-1]]]
    return Windows(count=best, first=best_pos, last=reach[best_pos] - 1)


def restart_loops(lives: pd.DataFrame, threshold: int = 5, window: Interval = "1h") -> pd.DataFrame:
    """Logical containers that restart ``threshold`` or more times within ``window``.

    A *logical* container is what a person would call "the same container":

    - with Kubernetes fields: namespace, pod and container name (each restart of a
      crash-looping container is a new container ID in the same pod; a pod runs on
      one node, so its host is part of the key too, at no cost in meaning);
    - without: host, manager, hostname and command (``docker run --restart``,
      systemd units, scripts running runc in a loop).

    ``threshold`` restarts means ``threshold + 1`` starts within one ``window``
    (sliding: :func:`densest_windows`).

    Columns: ``logical_container`` (label), ``kind`` (``kubernetes`` | ``host``),
    the key columns, ``image_name``, ``restarts`` (starts - 1 over all the data),
    ``max_restarts_in_window``, ``window_start``/``window_end`` (the densest window),
    ``first_start``, ``last_start``, ``p50_lifetime_s`` (its typical lifetime),
    ``last_exit_code``, ``last_signal``, ``last_outcome`` (how its latest ended run
    ended), ``last_status`` (``running`` if it is up at the end of the data).
    Most restarts in a window first.
    """
    win = parse_duration(window)
    if "manager" not in lives.columns:
        lives = fields.with_manager(lives)
    for c in K8S_KEY + HOST_KEY + ["image_name"]:
        if c not in lives.columns:
            lives = lives.assign(**{c: pd.Categorical([None] * len(lives))})
    none = pd.DataFrame({c: [] for c in _LOOP_COLUMNS})
    started = np.flatnonzero(bools(lives["start_type"].notna()))
    if len(started) <= threshold:
        return none
    is_k8s_all = bools(lives["pod_namespace"].notna() & lives["pod_name"].notna())
    key = _logical_keys(lives, is_k8s_all)[started]
    t = asi8(lives["start"])[started]
    order = np.lexsort((t, key))
    k, t = key[order], t[order]
    counts = np.diff(np.r_[np.flatnonzero(np.r_[True, k[1:] != k[:-1]]), len(k)])  # starts per logical container

    cand = counts > threshold
    if not cand.any():
        return none
    rows = np.repeat(cand, counts)
    starts = started[order[rows]]  # rows of ``lives``, by logical container then time
    sizes = counts[cand]
    windows = densest_windows(t[rows], sizes, win)
    looping = windows.count - 1 >= threshold
    if not looping.any():
        return none
    return _loop_rows(lives, starts, sizes, windows, looping, is_k8s_all[starts])


def _loop_rows(lives, starts, sizes, windows: Windows, looping, is_k8s) -> pd.DataFrame:
    """The rows of :func:`restart_loops`: ``starts`` (rows of ``lives``) in groups of
    ``sizes``, one per candidate logical container; those ``looping`` are kept."""
    gid = np.repeat(np.arange(len(sizes)), sizes)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    loop_groups = np.flatnonzero(looping)
    rows = np.repeat(looping, sizes)
    used = list(dict.fromkeys(K8S_KEY + HOST_KEY + ["image_name", "start", "lifetime_s", "status", "start_type", "exit_code", "signal"]))
    sel = lives[used].iloc[starts[rows]].reset_index(drop=True)
    sel["_g"] = gid[rows]
    g = sel.groupby("_g", sort=True)
    last = sel.drop_duplicates("_g", keep="last").set_index("_g")
    ended = sel[bools(sel["status"].isin(["ended", "orphan"]))].drop_duplicates("_g", keep="last").set_index("_g")
    done = sel[complete_mask(sel)]
    idx = pd.Index(loop_groups, name="_g")
    out = pd.DataFrame(index=idx)
    for c in K8S_KEY + HOST_KEY + ["image_name"]:
        out[c] = last[c].reindex(idx).astype(object)
    out["kind"] = np.where(is_k8s[first][loop_groups], "kubernetes", "host")
    out["restarts"] = sizes[loop_groups] - 1
    out["max_restarts_in_window"] = windows.count[loop_groups] - 1
    start_ns = asi8(lives["start"])
    out["window_start"] = datetimes(start_ns[starts[windows.first[loop_groups]]]).set_axis(idx)
    out["window_end"] = datetimes(start_ns[starts[windows.last[loop_groups]]]).set_axis(idx)
    out["first_start"] = g["start"].min().reindex(idx)
    out["last_start"] = g["start"].max().reindex(idx)
    out["p50_lifetime_s"] = done.groupby("_g")["lifetime_s"].median().reindex(idx)
    out["last_exit_code"] = ended["exit_code"].reindex(idx).astype("Int32")
    out["last_signal"] = ended["signal"].reindex(idx).astype("Int32")
    has_end = out.index.isin(ended.index)
    out["last_outcome"] = [
        outcome_label(c, s) if h else "none ended" for c, s, h in zip(out["last_exit_code"], out["last_signal"], has_end)
    ]  # one per loop found, not per event
    out["last_status"] = last["status"].reindex(out.index).astype(str).to_numpy()
    k8s_label = group_label(out, K8S_KEY)
    host_label = fields.text_series(
        [f"{h}: {who} {'' if pd.isna(cmd) else cmd}"
         for h, who, cmd in zip(out["host"], group_label(out, ["manager", "hostname"], none="-/-"), out["command"])],
        out.index,
    )
    out["logical_container"] = fields.text_series(np.where(out["kind"] == "kubernetes", k8s_label, host_label), out.index)
    out = out.sort_values(["max_restarts_in_window", "restarts"], ascending=False, kind="stable")
    return out[_LOOP_COLUMNS].reset_index(drop=True)


__all__ = [
    "BY_COLUMNS", "HOST_KEY", "K8S_KEY", "LIFETIME_COLUMNS", "Windows", "auto_interval", "churn_rates", "complete",
    "complete_mask", "concurrency", "densest_windows", "exit_summary", "group_label", "is_duration", "lifetime_quantiles",
    "lifetimes", "orphan_removes", "outcome_label", "parse_duration", "restart_loops", "short_lived", "signal_name",
    "top_churners",
]
