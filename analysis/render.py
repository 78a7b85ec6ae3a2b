"""Formatting a :class:`~runctrace.analysis.report.Report`: table (rich), markdown, JSON, CSV.

The human formats (table, markdown) are built from one list of :class:`Section`
objects, so they always show the same things; JSON and CSV come from
:func:`runctrace.analysis.report.to_dict` / :func:`~runctrace.analysis.report.to_long`.

Names, hostnames, arguments, notes and file names come from whoever created the
containers or wrote into the dataset directory. Each format is the edge where they
are made safe for what reads it:

- table: every piece of text through :func:`runctrace.safetext.printable` (an escape
  sequence or a newline is shown, not run), and as rich ``Text``, never as markup
  (a ``[/]`` in a name would otherwise be a tag, or an error);
- markdown: the same, and markdown's own characters escaped (:func:`_md_cell`);
- JSON and CSV: valid whatever the text (:func:`_machine`).
"""

from __future__ import annotations

import io as _io
import json
import math
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runctrace.safetext import escape, is_clean, printable

from .report import Report, to_dict, to_long

TIMELINE_ROWS = 30  # more intervals than this: the table shows the busiest only


@dataclass
class Section:
    title: str
    headers: Sequence[str]
    rows: List[Sequence[str]]
    note: Optional[str] = None
    right: Sequence[int] = field(default_factory=tuple)  # columns to right-align (numbers)


def duration(seconds) -> str:
    """Short human durations: 350ms, 12.3s, 4m05s, 2h00m, 3d04h."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)) or pd.isna(seconds):
        return "-"
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def _n(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "-"
    return f"{int(v):,}"


def _pct(v) -> str:
    return "-" if v is None or pd.isna(v) else f"{100 * float(v):.1f}%"


def _time(ts) -> str:
    return "-" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _short_outcome(text: str) -> str:
    """``signal 9 (SIGKILL)`` -> ``SIGKILL`` for narrow tables."""
    return text[text.index("(") + 1 : -1] if text.startswith("signal") and "(" in text else text


def headline(report: Report) -> str:
    d = report.dataset
    hosts = d["hosts"]
    host_text = f"{len(hosts)} hosts" if len(hosts) != 1 else f"host {hosts[0]}"
    return (
        f"{_n(d['events'])} events, {host_text}, {d['first_event'] or '-'} to {d['last_event'] or '-'}"
        + (" [SYNTHETIC DATA]" if d.get("synthetic") else "")
    )


def sections(report: Report) -> List[Section]:
    s, o, d = report.summary, report.options, report.dataset
    out = []
    lost = d.get("recorder_lost")
    missed = d.get("recorder_missed")
    rows = [
        ("containers (lifetimes)", _n(s["containers"])),
        ("starts", _n(s["starts"])),
        ("stops", _n(s["stops"])),
        ("running at the end of the data", _n(s["running_at_end"])),
        ("already running when recording began", _n(s["already_running"])),
        ("removes with no start (orphan)", _n(s["orphan_removes"])),
        ("starts whose remove was missed (lost)", _n(s["lost_removes"])),
        (f"short-lived (< {o.short_lived_s:g}s)", f"{_n(s['short_lived'])} ({_pct(s['short_lived_share'])} of complete lifetimes)"),
        ("peak running", _n(s["peak_running"])),
        (f"restart loops (>= {o.restart_threshold} restarts in {o.window})", _n(s["restart_loops"])),
    ]
    if lost is not None or missed is not None:
        rows.append(("recorder: events lost / runc calls missed", f"{_n(lost)} / {_n(missed)}"))
    out.append(Section("Summary", ("", "value"), [list(r) for r in rows], right=(1,)))

    lt = report.lifetime
    out.append(Section(
        "Lifetimes (complete ones: start and end both seen)",
        ("containers", "p50", "p90", "p99", "max"),
        [[_n(lt.get("containers")), *(duration(lt.get(k)) for k in ("p50", "p90", "p99", "max"))]],
        right=(0, 1, 2, 3, 4),
    ))

    ex = report.exits.head(10)
    out.append(Section(
        "How containers ended", ("outcome", "containers", "share"),
        [[r.outcome, _n(r.containers), _pct(r.share)] for r in ex.itertuples()],
        note=None if len(report.exits) <= 10 else f"{len(report.exits) - 10} more outcomes in --format json/csv",
        right=(1, 2),
    ))

    out.append(Section(
        f"Top churners by {o.by}",
        (o.by, "containers", "starts", "stops", "running", "short-lived", "failed", "p50 lifetime"),
        [[r.group, _n(r.containers), _n(r.starts), _n(r.stops), _n(r.running), _n(r.short_lived),
          _n(r.failed), duration(r.p50_lifetime_s)] for r in report.top.itertuples()],
        right=(1, 2, 3, 4, 5, 6, 7),
    ))

    loops = report.restart_loops
    if len(loops):
        shown = loops.head(10)
        out.append(Section(
            f"Restart loops (>= {o.restart_threshold} restarts within {o.window})",
            ("container", "restarts", "in window", "window from", "lifetime p50", "last exit", "now"),
            [[r.logical_container, _n(r.restarts), _n(r.max_restarts_in_window),
              f"{pd.Timestamp(r.window_start):%m-%d %H:%M} +{duration((r.window_end - r.window_start).total_seconds())}",
              duration(r.p50_lifetime_s), _short_outcome(r.last_outcome), r.last_status] for r in shown.itertuples()],
            note=None if len(loops) <= 10 else f"{len(loops) - 10} more in --format json/csv",
            right=(1, 2, 4),
        ))

    tl = report.timeline
    note = None
    if len(tl) > TIMELINE_ROWS:
        busiest = (tl["starts"] + tl["stops"]).nlargest(10, keep="first").index
        tl = tl.loc[sorted(busiest)]
        note = f"the 10 busiest of {len(report.timeline)} intervals; all of them with --format json/csv or --plot"
    out.append(Section(
        f"Starts, stops and running containers per {_interval(report.interval)}",
        ("interval start (UTC)", "starts", "stops", "running max", "running at end"),
        [[_time(t), _n(r.starts), _n(r.stops), _n(r.running_max), _n(r.running_end)] for t, r in tl.iterrows()],
        note=note, right=(1, 2, 3, 4),
    ))
    return out


def _interval(td: pd.Timedelta) -> str:
    return duration(td.total_seconds()).replace("m00s", "m").replace("h00m", "h").replace(".0s", "s")


def shown(text, style: str = "") -> Text:
    """Any text for a rich console: escapes made visible, nothing read as markup."""
    return Text(printable(text), style=style)


def print_table(report: Report, console: Console) -> None:
    """The default format: rich tables on the terminal."""
    console.print(Text.assemble(("runctrace report", "bold"), ": ", shown(headline(report))))
    for note in report.notes:
        console.print(Text.assemble(("note:", "yellow"), " ", shown(note)))
    for sec in sections(report):
        table = Table(title=shown(sec.title), title_justify="left", title_style="bold", show_header=any(sec.headers))
        for i, h in enumerate(sec.headers):
            # Numbers never wrap; names fold onto more lines when the terminal is narrow.
            if i in sec.right:
                table.add_column(shown(h), justify="right", no_wrap=True, min_width=len(h))
            else:
                table.add_column(shown(h), overflow="fold", min_width=min(len(h) or 8, 12))
        for row in sec.rows:
            table.add_row(*map(shown, row))
        if not sec.rows:
            table.add_row(*(["(none)"] + [""] * (len(sec.headers) - 1)))
        console.print(table)
        if sec.note:
            console.print(Text("  ") + shown(sec.note, "dim"))


def table_text(report: Report, width: int = 120) -> str:
    buf = _io.StringIO()
    print_table(report, Console(file=buf, width=width, highlight=False, color_system=None))
    return buf.getvalue()


# Characters markdown acts on inside a line: a table cell's end, emphasis, code, links
# and images, HTML. A backslash before any ASCII punctuation shows it as itself.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<|~&])")


def _md_cell(text) -> str:
    """Text for a markdown line or table cell: printable, markdown's characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", printable(text))


def to_markdown(report: Report) -> str:
    lines = ["# runctrace report", "", _md_cell(headline(report)), ""]
    for note in report.notes:
        lines.append(f"> note: {_md_cell(note)}")
    if report.notes:
        lines.append("")
    for sec in sections(report):
        lines += [f"## {printable(sec.title)}", ""]
        headers = [h or " " for h in sec.headers]
        lines.append("| " + " | ".join(map(_md_cell, headers)) + " |")
        lines.append("|" + "|".join("---:" if i in sec.right else "---" for i in range(len(headers))) + "|")
        for row in sec.rows or [["(none)"] + [""] * (len(headers) - 1)]:
            lines.append("| " + " | ".join(map(_md_cell, row)) + " |")
        if sec.note:
            lines += ["", f"_{_md_cell(sec.note)}_"]
        lines.append("")
    return "\n".join(lines)


def _machine(value):
    """``value`` with every string a program can read back.

    A string holding a byte that was not UTF-8 (a surrogate escape) cannot be
    written as UTF-8, and JSON's ``\\udcXX`` for it is refused by strict parsers:
    such a string is given in the recorder's escaped form (:func:`runctrace.safetext.escape`:
    backslashes doubled, each odd byte ``\\xHH``), as the Parquet files store it.
    Other strings are unchanged.
    """
    if isinstance(value, str):
        return value if is_clean(value) else escape(value)
    if isinstance(value, dict):
        return {_machine(k): _machine(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_machine(v) for v in value]
    return value


def to_json(report: Report) -> str:
    # ensure_ascii: control characters, C1 controls and bidirectional overrides are
    # written as \uXXXX escapes, so the document shows as itself on a terminal too.
    return json.dumps(_machine(to_dict(report)), indent=2, ensure_ascii=True)


def to_csv(report: Report) -> str:
    table = to_long(report)
    lines = [_csv_line(table.columns)]
    lines += [_csv_line(row) for row in table.itertuples(index=False, name=None)]
    return "".join(lines)


def _csv_line(fields) -> str:
    """One CSV record (RFC 4180 quoting, ``\\n`` at the end); strings as :func:`_machine` gives them.

    Written here because Python's csv module (and pandas, which uses it) quotes a
    field for the characters of its line terminator only: with ``\\n`` a lone
    ``\\r`` in a name went out unquoted, and CSV readers take it for a line break.
    """
    out = []
    for value in fields:
        text = "" if value is None else _machine(value) if isinstance(value, str) else str(value)
        if any(ch in text for ch in ',"\r\n'):
            text = '"' + text.replace('"', '""') + '"'
        out.append(text)
    return ",".join(out) + "\n"
