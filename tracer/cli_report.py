"""``runctrace report``: summarise recordings (the analysis lives in runctrace.analysis)."""

from __future__ import annotations

from typing import List

import typer
from rich.console import Console
from rich.table import Table

from .analysis import churn, io
from .cli import _one_line_errors, app

REPORT_EXAMPLES = """
Examples:

  runctrace report runctrace-node1-20261128T100000Z.parquet

  runctrace report node1.parquet node2.parquet     # several hosts at once
"""


@app.command(epilog=REPORT_EXAMPLES)
@_one_line_errors
def report(paths: List[str] = typer.Argument(..., help="Recordings (Parquet files) to read.")) -> None:
    """Summarise container churn in recordings."""
    events = io.load_events(paths)
    console = Console(highlight=False)
    if events.empty:
        console.print("no events recorded")
        return
    lives = churn.lifetimes(events)
    ended = lives["end"].notna()
    console.print(
        f"{len(events)} events, {len(lives)} containers "
        f"({int(ended.sum())} ended, {int((~ended).sum())} still running), "
        f"{churn.orphan_removes(events)} removes without an add"
    )
    table = Table("start", "container", "pid", "lifetime", "exit", "command")
    for row in lives.itertuples(index=False):
        lifetime = "running" if row.lifetime_s != row.lifetime_s else f"{row.lifetime_s:.3f}s"
        exit_ = "" if row.exit_code != row.exit_code or row.exit_code is None else str(int(row.exit_code))
        if row.signal == row.signal and row.signal is not None:
            exit_ = f"signal {int(row.signal)}"
        args = " ".join(row.process_args) if row.process_args is not None else ""
        pid = "" if row.container_pid != row.container_pid else str(int(row.container_pid))
        table.add_row(str(row.start)[:23], row.container_id, pid, lifetime, exit_, args[:60])
    console.print(table)
