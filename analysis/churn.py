"""Container lifetimes from events: pure ``DataFrame -> DataFrame`` functions."""

from __future__ import annotations

import pandas as pd

LIFETIME_COLUMNS = [
    "host", "container_id", "container_pid", "start", "end", "lifetime_s",
    "exit_code", "signal", "process_args", "bundle",
]


def lifetimes(events: pd.DataFrame) -> pd.DataFrame:
    """One row per container lifetime: each add matched with its remove.

    Matching key is (host, container_id, container_pid), in time order, so a container
    ID reused later (a restarted container) gives separate lifetimes. Containers with
    no remove are kept open (``end`` is NaT); removes with no add are dropped here and
    counted by :func:`orphan_removes`.
    """
    if events.empty:
        return pd.DataFrame(columns=LIFETIME_COLUMNS)
    ev = events.assign(container_pid=events["container_pid"].fillna(-1).astype("int64"))
    key = ["host", "container_id", "container_pid"]
    ev = ev.assign(_n=ev.groupby(key + ["type"]).cumcount())
    adds = ev[ev["type"] == "add"]
    removes = ev[ev["type"] == "remove"][key + ["_n", "time", "exit_code", "signal"]]
    out = adds[key + ["_n", "time", "process_args", "bundle"]].merge(
        removes, on=key + ["_n"], how="left", suffixes=("", "_end")
    )
    out = out.rename(columns={"time": "start", "time_end": "end"})
    out["lifetime_s"] = (out["end"] - out["start"]).dt.total_seconds()
    out["container_pid"] = out["container_pid"].where(out["container_pid"] >= 0)
    return out[LIFETIME_COLUMNS].sort_values("start", kind="stable").reset_index(drop=True)


def orphan_removes(events: pd.DataFrame) -> int:
    """How many remove events have no add before them in the data."""
    if events.empty:
        return 0
    ev = events.assign(container_pid=events["container_pid"].fillna(-1))
    key = ["host", "container_id", "container_pid"]
    counts = ev.pivot_table(index=key, columns="type", values="time_ns", aggfunc="count", fill_value=0)
    adds = counts["add"] if "add" in counts else 0
    removes = counts["remove"] if "remove" in counts else 0
    return int((removes - adds).clip(lower=0).sum()) if hasattr(removes, "sum") else 0
