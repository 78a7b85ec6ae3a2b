"""What ``runctrace report`` computes: the churn functions composed, plus stable shapes.

:func:`build_report` runs the pipeline once and keeps every table it shows, so the
renderers (:mod:`runctrace.analysis.render`) and the plot
(:mod:`runctrace.analysis.plot`) only format: nothing is computed twice and the
formats cannot disagree.

The JSON and CSV shapes are for scripts and are kept stable: fields are only ever
added. ``REPORT_FORMAT`` changes if a field ever changes meaning. The shapes are
documented in docs/report.md and summarised in ``runctrace report --help``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from . import churn, fields

REPORT_FORMAT = "runctrace.report/1"

# The log-spaced lifetime histogram: 10 ms to ~11 days, 4 bins per decade.
HIST_EDGES_S = np.r_[0.0, 10.0 ** np.arange(-2, 6.01, 0.25)]


def parse_time(text: str, what: str = "time", now: Optional[pd.Timestamp] = None) -> pd.Timestamp:
    """``--since``/``--until``: ISO 8601 (naive means UTC) or a duration before now (``2h``).

    A duration is relative to *now*, like ``docker logs --since``; for an old
    recording give a timestamp instead.
    """
    text = text.strip()
    if churn.is_duration(text):
        now = now if now is not None else pd.Timestamp.now(tz="UTC")
        return now - churn.parse_duration(text)
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = None
    if ts is None or pd.isna(ts):
        raise ValueError(f"{what} {text!r}: not a time; use ISO 8601 (2026-11-28T10:00, UTC unless an offset is given) "
                         "or a duration ago (30m, 2h, 1d)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass
class ReportOptions:
    """The knobs of a report; the CLI's options map one to one."""

    interval: Any = None  # None / "auto": chosen from the data's span
    by: str = "image"
    top: int = 10
    short_lived_s: float = 10.0
    restart_threshold: int = 5
    window: Any = "1h"
    since: Optional[pd.Timestamp] = None
    until: Optional[pd.Timestamp] = None


@dataclass
class Report:
    options: ReportOptions
    interval: pd.Timedelta
    dataset: Dict[str, Any]
    summary: Dict[str, Any]
    lifetime: Dict[str, Any]  # containers, p50, p90, p99, max (seconds)
    timeline: pd.DataFrame  # per interval: starts, stops, running_max, running_min, running_end
    exits: pd.DataFrame
    top: pd.DataFrame
    restart_loops: pd.DataFrame
    lifetime_histogram: pd.DataFrame  # lo_s, hi_s, containers, in_restart_loops
    notes: List[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.dataset.get("events", 0) == 0


def build_report(
    events: pd.DataFrame, options: Optional[ReportOptions] = None, files: Optional[pd.DataFrame] = None,
    paths: Sequence[str] = (), notes: Sequence[str] = (), counters: Optional[dict] = None,
) -> Report:
    """Everything ``runctrace report`` shows, from events, plus what the files' footers
    say (``files``: :attr:`Recordings.files`, ``counters``:
    :meth:`Recordings.recorder_counters`)."""
    options = options or ReportOptions()
    events = fields.derive_all(events)
    lives = churn.lifetimes(events)
    interval = churn.auto_interval(lives) if options.interval in (None, "auto") else churn.parse_duration(options.interval)

    timeline = churn.churn_rates(lives, interval).join(churn.concurrency(lives, interval))
    loops = churn.restart_loops(lives, options.restart_threshold, options.window)
    q = churn.lifetime_quantiles(lives).iloc[0].to_dict()
    status = lives["status"].value_counts()
    n_short = int((churn.complete_mask(lives) & (lives["lifetime_s"].to_numpy(dtype=float) < options.short_lived_s)).sum())
    n_complete = int(q["containers"])
    t = events["time"] if len(events) else None

    dataset = {
        "paths": list(paths),
        "files": int(len(files)) if files is not None else None,
        "events": int(len(events)),
        "hosts": sorted(map(str, events["host"].dropna().unique())) if len(events) else [],
        "first_event": _iso(t.min()) if t is not None else None,
        "last_event": _iso(t.max()) if t is not None else None,
        "synthetic": bool(files["synthetic"].any()) if files is not None and len(files) else False,
        "schema_versions": sorted({str(v) for v in files["schema_version"]}) if files is not None and len(files) else [],
        "recorder_lost": (counters or {}).get("lost"),
        "recorder_missed": (counters or {}).get("missed"),
    }
    summary = {
        "containers": int(len(lives)),
        "starts": int((lives["start_type"] == "add").sum()),
        "already_running": int((lives["start_type"] == "initial").sum()),
        "stops": int(lives["status"].isin(["ended", "orphan"]).sum()),
        "ended": int(status.get("ended", 0)),
        "running_at_end": int(status.get("running", 0)),
        "lost_removes": int(status.get("lost", 0)),
        "orphan_removes": int(status.get("orphan", 0)),
        "short_lived": int(n_short),
        "short_lived_share": (n_short / n_complete) if n_complete else None,
        "peak_running": int(timeline["running_max"].max()) if len(timeline) else 0,
        "restart_loops": int(len(loops)),
        "unknown_event_types": int((~events["type"].isin(["add", "initial", "remove"])).sum()) if len(events) else 0,
    }
    return Report(
        options=options,
        interval=interval,
        dataset=dataset,
        summary=summary,
        lifetime={k: (int(v) if k == "containers" else _num(v)) for k, v in q.items()},
        timeline=timeline,
        exits=churn.exit_summary(lives),
        top=churn.top_churners(lives, options.by, options.top, options.short_lived_s),
        restart_loops=loops,
        lifetime_histogram=lifetime_histogram(lives, loops),
        notes=list(notes),
    )


def lifetime_histogram(lives: pd.DataFrame, loops: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Complete lifetimes counted in log-spaced bins (``lo_s`` <= lifetime < ``hi_s``),
    with how many of them belong to a restart loop (so a plot can colour them)."""
    done = churn.complete_mask(lives)
    vals = lives["lifetime_s"].to_numpy(dtype=float)[done]
    edges = np.r_[HIST_EDGES_S, max(HIST_EDGES_S[-1] * 10, vals.max() + 1 if len(vals) else 0)]
    counts, _ = np.histogram(vals, bins=edges)
    in_loops = np.zeros_like(counts)
    if loops is not None and len(loops) and len(vals):
        mask = _in_loops(lives, loops)[done]
        in_loops, _ = np.histogram(vals[mask], bins=edges)
    return pd.DataFrame({"lo_s": edges[:-1], "hi_s": edges[1:], "containers": counts, "in_restart_loops": in_loops})


def _in_loops(lives: pd.DataFrame, loops: pd.DataFrame) -> np.ndarray:
    """Which lifetimes belong to one of the restart loops (joined on the logical key).

    A cheap ``isin`` on one column narrows the rows first, so the exact join on the
    whole key runs on a few thousand rows, not millions.
    """
    mask = np.zeros(len(lives), bool)
    for kind, key, narrow in (("kubernetes", churn.K8S_KEY, "pod_name"), ("host", churn.HOST_KEY, "hostname")):
        part = loops[loops["kind"] == kind]
        if part.empty or not all(c in lives.columns for c in key):
            continue
        candidates = np.flatnonzero(lives[narrow].isin(part[narrow].dropna().unique()).to_numpy())
        if kind == "host" and part[narrow].isna().any():
            candidates = np.union1d(candidates, np.flatnonzero(lives[narrow].isna().to_numpy()))
        # Joined on the key form of every column, both sides alike: a name may hold
        # bytes that were not UTF-8, which pandas cannot join on as they are.
        sub = lives.iloc[candidates][key].astype(object)
        sub = pd.DataFrame({c: fields.key_form(sub[c]) for c in key})
        right = pd.DataFrame({c: fields.key_form(part[c].astype(object)) for c in key}).drop_duplicates()
        hit = sub.merge(right.assign(_hit=True), on=key, how="left")["_hit"].notna().to_numpy()
        mask[candidates[hit]] = True
    return mask


def _iso(ts) -> Optional[str]:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _num(v):
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    return v


def _jsonable(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, datetime, np.datetime64)):
        return _iso(pd.Timestamp(v).tz_localize("UTC") if pd.Timestamp(v).tzinfo is None else v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(v) else float(v)
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _records(frame: pd.DataFrame, columns: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    frame = frame if columns is None else frame[list(columns)]
    cols = list(frame.columns)
    return [dict(zip(cols, map(_jsonable, row))) for row in frame.itertuples(index=False, name=None)]


TOP_FIELDS = ["group", "containers", "starts", "stops", "running", "short_lived", "failed", "p50_lifetime_s"]
LOOP_FIELDS = [
    "logical_container", "kind", "pod_namespace", "pod_name", "container_name", "host", "manager", "hostname", "command",
    "image_name", "restarts", "max_restarts_in_window", "window_start", "window_end", "first_start", "last_start",
    "p50_lifetime_s", "last_exit_code", "last_signal", "last_outcome", "last_status",
]
EXIT_FIELDS = ["outcome", "exit_code", "signal", "containers", "share"]
TIMELINE_FIELDS = ["time", "starts", "stops", "running_max", "running_min", "running_end"]


def to_dict(report: Report) -> Dict[str, Any]:
    """The JSON document (see docs/report.md). Times are ISO 8601 UTC strings,
    durations seconds, missing values null."""
    o = report.options
    timeline = report.timeline.reset_index()
    return {
        "format": REPORT_FORMAT,
        "generated": _iso(pd.Timestamp(datetime.now(timezone.utc))),
        "options": {
            "since": _iso(o.since) if o.since is not None else None,
            "until": _iso(o.until) if o.until is not None else None,
            "interval_s": report.interval.total_seconds(),
            "by": o.by,
            "top": o.top,
            "short_lived_s": float(o.short_lived_s),
            "restart_threshold": int(o.restart_threshold),
            "window_s": churn.parse_duration(o.window).total_seconds(),
        },
        "dataset": report.dataset,
        "summary": {k: _jsonable(v) for k, v in report.summary.items()},
        "lifetime_s": {k: _jsonable(v) for k, v in report.lifetime.items()},
        "exits": _records(report.exits, EXIT_FIELDS),
        "top": {"by": o.by, "rows": _records(report.top, TOP_FIELDS)},
        "restart_loops": _records(report.restart_loops, LOOP_FIELDS),
        "timeline": _records(timeline, TIMELINE_FIELDS),
        "lifetime_histogram": _records(report.lifetime_histogram),
        "notes": list(report.notes),
    }


CSV_COLUMNS = ["section", "key", "metric", "value"]


def to_long(report: Report) -> pd.DataFrame:
    """The whole report as one tidy table: ``section,key,metric,value``.

    One CSV shape for every section, so a script reads it with any CSV reader and
    pivots what it needs (``section == "timeline"`` and ``metric == "starts"``, for
    instance). ``key`` names the row within its section: empty for single-row
    sections, the interval start for ``timeline``, the group for ``top``, the
    logical container for ``restart_loops``, the outcome for ``exits``, the bin
    for ``lifetime_histogram``.
    """
    d = to_dict(report)
    rows: List[tuple] = []

    def flat(section: str, key: str, mapping: Dict[str, Any], skip=()):
        for metric, value in mapping.items():
            if metric in skip:
                continue
            if isinstance(value, list):
                value = ";".join(map(str, value))
            rows.append((section, key, metric, value))

    flat("options", "", d["options"])
    flat("dataset", "", d["dataset"])
    flat("summary", "", d["summary"])
    flat("lifetime_s", "", d["lifetime_s"])
    for r in d["exits"]:
        flat("exits", r["outcome"], r, skip=("outcome",))
    for r in d["top"]["rows"]:
        flat(f"top_by_{report.options.by}", r["group"], r, skip=("group",))
    for r in d["restart_loops"]:
        flat("restart_loops", r["logical_container"], r, skip=("logical_container",))
    for r in d["timeline"]:
        flat("timeline", r["time"], r, skip=("time",))
    for r in d["lifetime_histogram"]:
        flat("lifetime_histogram", f"{r['lo_s']:g}-{r['hi_s']:g}", r, skip=("lo_s", "hi_s"))
    for i, note in enumerate(d["notes"]):
        rows.append(("notes", str(i), "note", note))
    # Python objects, not inferred strings: a key or value may hold bytes that were
    # not UTF-8 (surrogate escapes), which pandas' strings refuse.
    return pd.DataFrame({c: pd.Series([r[i] for r in rows], dtype=object) for i, c in enumerate(CSV_COLUMNS)})
