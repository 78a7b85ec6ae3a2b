"""``runctrace report``: summarise container churn in recordings.

Thin on purpose: parse the options, call :mod:`runctrace.analysis`, print. The
analysis itself is in ``runctrace.analysis.churn``; the formats in
``runctrace.analysis.render``; their shapes are documented in docs/report.md.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.text import Text

from runctrace.analysis import io, render
from runctrace.analysis.churn import BY_COLUMNS, parse_duration
from runctrace.analysis.report import ReportOptions, build_report, parse_time
from runctrace.cli import app
from runctrace.errors import RunctraceError


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


By = enum.Enum("By", {k: k for k in BY_COLUMNS}, type=str)  # image, pod, namespace, manager, host, command

REPORT_EXAMPLES = """
Examples:

  runctrace report node1.parquet                       # one recording, tables on the terminal

  runctrace report node1.parquet node2.parquet         # several hosts at once

  runctrace report /data/runctrace/                    # a directory, e.g. host=<name>/date=<day>/*.parquet

  runctrace report /data/runctrace/ --host node7 --since 2026-11-28T08:00 --until 2026-11-28T12:00

  runctrace report rec/ --since 2h --by pod --namespace 'prod-*'     # last two hours, per pod

  runctrace report rec/ --short-lived 2 --restart-threshold 3 --window 10m

  runctrace report rec/ --plot churn.html              # starts/stops, running, lifetimes; restart loops in red

  runctrace report rec/ --format json | jq '.restart_loops[] | {logical_container, restarts, last_outcome}'

  runctrace report rec/ --format csv > churn.csv       # section,key,metric,value (one tidy table)


Formats (full description in docs/report.md):

  table     rich tables (default); markdown: the same tables as GitHub markdown.

  json      {"format": "runctrace.report/1", "options", "dataset", "summary", "lifetime_s",
            "exits": [...], "top": {"by", "rows": [...]}, "restart_loops": [...],
            "timeline": [{"time", "starts", "stops", "running_max", "running_min", "running_end"}],
            "lifetime_histogram": [...], "notes": [...]}. Times: ISO 8601 UTC; durations: seconds.

  csv       columns section,key,metric,value; one row per number, e.g.
            timeline,2026-11-28T10:00:00.000000Z,starts,42. Fields are only ever added.


Terms: a container's "status" is ended, running (no remove before the data ends), lost (the same ID
started again with no remove between) or orphan (a remove with no start: it started before the
data). Lifetime statistics use complete lifetimes only (add and remove both seen). A restart loop
is one logical container (namespace/pod/container, or host+manager+hostname+command without
Kubernetes) starting more than N times within the window.
"""


def _say(console: Console, *parts) -> None:
    """One line on ``console``: ``runctrace:`` and the parts, each shown as text
    (:func:`runctrace.analysis.render.shown`): file names and notes come from the data."""
    console.print(Text.assemble("runctrace: ", *(p if isinstance(p, Text) else render.shown(p) for p in parts)))


def _safe_errors(fn):
    """Like :func:`runctrace.cli._one_line_errors`, for messages that quote file names
    from the dataset directory: printed as text, never as rich markup, escapes shown."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RunctraceError as err:
            _say(Console(stderr=True, highlight=False, soft_wrap=True), Text("error:", "bold red"), " ", str(err))
            raise typer.Exit(1)

    return wrapper


@app.command(epilog=REPORT_EXAMPLES)
@_safe_errors
def report(
    paths: List[str] = typer.Argument(..., help="Recordings: Parquet files and/or directories of them."),
    since: Optional[str] = typer.Option(None, "--since", help="Only events at or after this time: ISO 8601 (UTC unless an offset is given) or a duration ago (2h, 30m, 1d)."),
    until: Optional[str] = typer.Option(None, "--until", help="Only events before this time (same forms as --since)."),
    host: List[str] = typer.Option([], "--host", help="Only this host (repeatable)."),
    namespace: List[str] = typer.Option([], "--namespace", "-n", help="Only this Kubernetes namespace; shell patterns allowed (repeatable)."),
    image: List[str] = typer.Option([], "--image", help="Only this image; shell patterns allowed, e.g. '*nginx*' (repeatable)."),
    interval: str = typer.Option("auto", "--interval", "-i", help="Time step of the timeline: 10s, 1m, 5m, 1h... [default: auto, at most ~120 steps]"),
    by: By = typer.Option("image", "--by", help="Group the top churners by this."),
    top: int = typer.Option(10, "--top", min=1, help="How many top churners to show."),
    short_lived: float = typer.Option(10.0, "--short-lived", min=0, metavar="SECONDS", help="A container living less than this is short-lived."),
    restart_threshold: int = typer.Option(5, "--restart-threshold", min=1, metavar="N", help="A restart loop is N or more restarts..."),
    window: str = typer.Option("1h", "--window", help="...within this long (e.g. 10m, 1h)."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE.png|FILE.html", help="Also draw the plots to this file."),
) -> None:
    """Summarise container churn in recordings: lifetimes, rates, exits, top churners, restart loops."""
    if plot and os.path.splitext(plot)[1].lower() not in (".png", ".html", ".htm"):
        raise RunctraceError(f"--plot {plot}: the file name must end in .png or .html")  # before any work
    try:
        parse_duration(window)  # checked now; the text is kept as typed, for display
        options = ReportOptions(
            interval=None if interval == "auto" else parse_duration(interval),
            by=by.value,
            top=top,
            short_lived_s=short_lived,
            restart_threshold=restart_threshold,
            window=window.strip(),
            since=parse_time(since, "--since") if since else None,
            until=parse_time(until, "--until") if until else None,
        )
    except ValueError as err:
        raise RunctraceError(str(err)) from err
    recordings = io.open_recordings(paths)
    events = recordings.events(
        since=options.since, until=options.until, hosts=host or None,
        namespaces=namespace or None, images=image or None, sort=False,
    )
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = build_report(events, options, files=recordings.files, paths=paths, notes=recordings.notes,
                              counters=recordings.recorder_counters())
    except ValueError as e:  # e.g. an interval far too small for the data's span
        raise RunctraceError(str(e)) from e
    del events

    if result.empty:
        filtered = any([since, until, host, namespace, image])
        message = "no events" + (" match the filters" if filtered else f" in {', '.join(paths)}")
        if fmt in (Format.json, Format.csv):
            _say(err, message)  # the document below is still valid, with zeros
        else:
            for note in result.notes:
                _say(err, "note: ", note)
            _say(Console(highlight=False, soft_wrap=True), message)
            return

    if fmt is Format.table:
        # Piped to a file or a pager: wide enough that tables do not wrap ($COLUMNS wins).
        wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
        render.print_table(result, Console(highlight=False, width=wide))
    elif fmt is Format.markdown:
        sys.stdout.write(render.to_markdown(result))
    elif fmt is Format.json:
        sys.stdout.write(render.to_json(result) + "\n")
    else:
        sys.stdout.write(render.to_csv(result))
    if fmt in (Format.json, Format.csv):
        for note in result.notes:
            _say(err, "note: ", note)

    if plot:
        if result.empty:
            _say(err, f"no plot written to {plot}: no events")
        else:
            from runctrace.analysis import plot as plots

            plots.save(result, plot)
            _say(err, f"wrote {plot}")
