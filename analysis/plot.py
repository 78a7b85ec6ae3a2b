"""Plots of churn: starts/stops over time, running containers, lifetime distribution.

Each ``plot_*`` function draws on a matplotlib ``Axes`` from a report table, so a
notebook can use them one by one; :func:`figure` puts them together with the
restart loops highlighted, and :func:`save` writes ``.png`` or a self-contained
``.html`` (the PNG inlined as base64: one file to attach or mail, nothing else to
install). matplotlib is imported lazily (it is the optional ``plot`` extra), and
pyplot never: figures are plain ``matplotlib.figure.Figure`` objects, so nothing
global (the backend) is touched.
"""

from __future__ import annotations

import base64
import html
import io as _io
import os
from typing import Optional

import pandas as pd

from runctrace.errors import RunctraceError
from runctrace.safetext import printable

from .report import Report

LOOP_COLOR = "#d62728"


def _figure(**kw):
    """A matplotlib Figure made without pyplot: no global backend is chosen or
    changed, so the CLI needs no display and a notebook keeps its inline backend."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RunctraceError("plots need matplotlib: pip install 'runctrace[plot]'") from err
    return Figure(**kw)


def _naive(index: pd.DatetimeIndex):
    # matplotlib's date axis wants naive or tz-aware datetimes; UTC labels say so.
    return index.tz_convert("UTC").tz_localize(None)


def _naive_ts(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def plot_rates(ax, timeline: pd.DataFrame, loops: Optional[pd.DataFrame] = None, max_loops: int = 3):
    """Starts and stops per interval; the densest window of each top restart loop shaded."""
    if timeline.empty:
        ax.set_title("Starts and stops: no events")
        return
    x = _naive(timeline.index)
    width = (x[1] - x[0]) if len(x) > 1 else pd.Timedelta(seconds=1)
    ax.bar(x, timeline["starts"], width=width, align="edge", color="#1f77b4", alpha=0.8, label="starts")
    ax.bar(x, -timeline["stops"], width=width, align="edge", color="#ff7f0e", alpha=0.8, label="stops (down)")
    ax.axhline(0, color="black", linewidth=0.5)
    if loops is not None and len(loops):
        for i, r in enumerate(loops.head(max_loops).itertuples()):
            lo, hi = _naive_ts(r.window_start), _naive_ts(r.window_end)
            if hi <= lo:
                hi = lo + width
            ax.axvspan(lo, hi, color=LOOP_COLOR, alpha=0.15, label="restart loop" if i == 0 else None)
            # A name is shown as text: escapes visible, and no mathtext (a "$" in it
            # would otherwise be parsed, and a malformed formula stops the drawing).
            ax.annotate(f"{printable(r.logical_container)[:40]}: {r.max_restarts_in_window} restarts",
                        xy=(lo, 1), xycoords=("data", "axes fraction"), xytext=(2, -12 - 11 * i),
                        textcoords="offset points", fontsize=7, color=LOOP_COLOR, parse_math=False)
    ax.set_ylabel("containers / interval")
    ax.set_title("Starts (up) and stops (down)")
    ax.legend(loc="lower right", fontsize=8)


def plot_concurrency(ax, timeline: pd.DataFrame):
    """Containers running: the band is min..max within each interval, the line the end."""
    if timeline.empty:
        ax.set_title("Containers running: no events")
        return
    x = _naive(timeline.index)
    ax.fill_between(x, timeline["running_min"], timeline["running_max"], step="post", color="#2ca02c", alpha=0.25,
                    label="min..max in interval")
    ax.step(x, timeline["running_end"], where="post", color="#2ca02c", label="at interval end")
    ax.set_ylabel("running")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Containers running")
    ax.legend(loc="upper left", fontsize=8)


def plot_lifetimes(ax, histogram: pd.DataFrame):
    """Distribution of complete lifetimes on a log scale; restart-loop ones in red."""
    if histogram.empty or not histogram["containers"].any():
        ax.set_title("Lifetime distribution: no complete lifetimes")
        return
    h = histogram[histogram["hi_s"] > 0]
    lo = h["lo_s"].where(h["lo_s"] > 0, h["hi_s"] / 10 ** 0.25)
    widths = h["hi_s"] - lo
    ax.bar(lo, h["containers"], width=widths, align="edge", color="#9467bd", alpha=0.8, label="all complete lifetimes")
    if h["in_restart_loops"].any():
        ax.bar(lo, h["in_restart_loops"], width=widths, align="edge", color=LOOP_COLOR, alpha=0.8,
               label="in restart loops")
    ax.set_xscale("log")
    nz = h[h["containers"] > 0]
    if len(nz):
        ax.set_xlim(max(float(nz["lo_s"].min()), 1e-3) / 2, float(nz["hi_s"].max()) * 2)
    ax.set_xlabel("lifetime (seconds, log scale)")
    ax.set_ylabel("containers")
    ax.set_title("Lifetime distribution")
    ax.legend(loc="upper right", fontsize=8)


def figure(report: Report):
    """The three panels in one matplotlib Figure (shows inline in a notebook)."""
    fig = _figure(figsize=(11, 10), layout="constrained")
    axes = fig.subplots(3, 1)
    plot_rates(axes[0], report.timeline, report.restart_loops)
    plot_concurrency(axes[1], report.timeline)
    if len(report.timeline):
        axes[1].sharex(axes[0])
    plot_lifetimes(axes[2], report.lifetime_histogram)
    title = f"runctrace: {report.dataset['events']:,} events, {len(report.dataset['hosts'])} host(s)"
    if report.dataset.get("synthetic"):
        title += " [SYNTHETIC DATA]"
    fig.suptitle(title)
    return fig


def png_bytes(report: Report, dpi: int = 110) -> bytes:
    buf = _io.BytesIO()
    figure(report).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save(report: Report, path: str) -> str:
    """Write the figure to ``path``: ``.png``, or ``.html`` with the PNG inlined."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".html", ".htm"):
        raise RunctraceError(f"--plot {path}: the file name must end in .png or .html")
    data = png_bytes(report)
    if ext == ".png":
        content = data
    else:
        from .render import headline

        b64 = base64.b64encode(data).decode("ascii")
        notes = "".join(f"<p class=note>note: {html.escape(printable(n))}</p>" for n in report.notes)
        content = (
            "<!doctype html>\n<html><head><meta charset=utf-8><title>runctrace report</title>"
            "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}.note{color:#a60}</style>"
            f"</head><body><h1>runctrace report</h1><p>{html.escape(printable(headline(report)))}</p>{notes}"
            f"<img alt='churn plots' src='data:image/png;base64,{b64}'></body></html>\n"
        ).encode("utf-8")
    try:
        with open(path, "wb") as f:
            f.write(content)
    except OSError as err:
        raise RunctraceError(f"cannot write {path}: {err.strerror or err}") from err
    return path


__all__ = ["figure", "plot_concurrency", "plot_lifetimes", "plot_rates", "png_bytes", "save"]
