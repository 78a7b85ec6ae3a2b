"""``runctrace churn``: start real containers on purpose (see runctrace.workload.generator)."""

from __future__ import annotations

import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from runctrace.workload.generator import DRIVERS, Churn, write_truth
from runctrace.cli import _one_line_errors, app

CHURN_EXAMPLES = """
Examples:

  runctrace churn -n 200 -c 8                             # 200 `runc run` containers, 8 at a time

  runctrace churn -n 50 --driver ctr --lifetime exp:0.5   # through containerd, mean lifetime 0.5 s

  runctrace churn -n 100 --fail-share 0.1 --crash-loop 6 --truth truth.jsonl
"""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@app.command(epilog=CHURN_EXAMPLES)
@_one_line_errors
def churn(
    count: int = typer.Option(100, "--count", "-n", min=0, help="Containers to start."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="Containers at once."),
    driver: str = typer.Option("run", "--driver", help=f"How to start them: {', '.join(DRIVERS)} (create = create/start/delete)."),
    lifetime: str = typer.Option("fixed:0", "--lifetime", help="fixed:S, uniform:LOW-HIGH or exp:MEAN (seconds)."),
    fail_share: float = typer.Option(0.0, "--fail-share", min=0.0, max=1.0, help="Share that fails on purpose (missing binary, bad mount)."),
    crash_loop: int = typer.Option(0, "--crash-loop", min=0, help="Restarts of one crash-looping container."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Write the ground truth here (JSON lines)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for lifetimes and failures."),
) -> None:
    """Start real containers from a busybox root filesystem, with ground truth."""
    console = Console(stderr=True)
    # `kill` (SIGTERM) cleans up as Ctrl-C does: every container started is deleted
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="runctrace-churn-") as tmp:
        job = Churn(Path(tmp), driver=driver, lifetime=lifetime, fail_share=fail_share, crash_loop=crash_loop, seed=seed)
        outcome: Counter = Counter()
        columns = (TextColumn("churn"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
        with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("", total=count + crash_loop)

            def done(t):
                outcome["as planned" if t.ok else "unexpected"] += 1
                progress.update(task, advance=1, description=", ".join(f"{v} {k}" for k, v in outcome.items()))

            results = job.run(count, concurrency, done)
    if truth:
        write_truth(truth, results)
    bad = [t for t in results if not t.ok]
    console.print(f"runctrace churn: {len(results)} containers, {len(bad)} not as planned"
                  + (f"; ground truth in {truth}" if truth else ""))
    for t in bad[:5]:
        console.print(f"  {t.container_id}: {t.detail}", markup=False)
