"""The ``runctrace`` command line. Commands stay thin: parse, call the library, print.

Every error runctrace raises on purpose is a :class:`RunctraceError`; it reaches the
user as one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from typing import List, Optional

import typer
from rich.console import Console

from .backends import CHOICES, open_notifier
from .errors import RunctraceError
from .recording import ParquetRecorder, default_output

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="See every OCI container that runc creates or ends on this host, and record it.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RunctraceError as err:
            Console(stderr=True).print(f"[bold red]runctrace: error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


RECORD_EXAMPLES = """
Examples:

  runctrace record --backend fanotify                 # until Ctrl-C, to ./runctrace-HOST-TIME.parquet

  runctrace record -o /var/tmp/node.parquet -d 600    # ten minutes

  runctrace record --runc-path /opt/bin/runc          # a runc outside the usual paths

Then: runctrace report FILE
"""


@app.command(epilog=RECORD_EXAMPLES)
@_one_line_errors
def record(
    backend: str = typer.Option("auto", "--backend", "-b", help=f"One of: {', '.join(CHOICES)}."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Parquet file to write. [default: ./runctrace-HOST-TIME.parquet]"),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", min=0, help="Stop after this many seconds. [default: until Ctrl-C or SIGTERM]"),
    runc_path: List[str] = typer.Option([], "--runc-path", help="Also watch this runc binary (repeatable). Also: $RUNCTRACE_RUNC_PATHS."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print each event."),
    keep_env: bool = typer.Option(False, "--keep-env", help="Keep environment values in the recorded spec (redacted by default: they often hold secrets)."),
) -> None:
    """Record containers that runc creates and ends, to a Parquet file."""
    output = output or default_output()
    notifier, why = open_notifier(backend, runc_paths=tuple(runc_path))
    try:
        recorder = ParquetRecorder(output, keep_env=keep_env)
    except RunctraceError:
        notifier.close()
        raise
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"runctrace: {why}; recording to {output}" + (f" for {duration:g}s" if duration else "; Ctrl-C to stop"))

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = time.monotonic() + duration if duration else None
    show_status = err.is_terminal
    status_console = out if out.is_terminal else err
    status = status_console.status("") if show_status else None
    failure: Optional[RunctraceError] = None
    try:
        if status:
            status.start()
        while not stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            event = notifier.get(timeout=min(0.25, remaining) if remaining else 0.25)
            if event is not None:
                recorder.write(event)
                if not quiet:
                    (status_console if status else out).print(event.describe(), markup=False)
            else:
                recorder.flush()  # idle: make the last events durable
            if status:
                s = notifier.stats
                running = getattr(notifier, "running_containers", "?")
                status.update(
                    f"{notifier.name}: {recorder.rows_written + len(recorder._rows)} events, "
                    f"{running} running, {s.lost} lost, {s.missed} missed"
                )
    except RunctraceError as exc:
        failure = exc
    finally:
        if status:
            status.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        notifier.close()
        # drain what the notifier queued before it closed
        while (event := notifier.get(timeout=0)) is not None:
            try:
                recorder.write(event)
            except RunctraceError as exc:
                failure = failure or exc
                break
        stats = notifier.stats.as_dict()
        recorder.close(stats=stats, backend=notifier.name)
    if failure:
        raise failure
    err.print(
        f"runctrace: wrote {recorder.rows_written} events to {output} "
        f"({stats['adds']} add, {stats['removes']} remove, {stats['lost']} lost, {stats['missed']} missed)"
    )


def main() -> None:
    # Load other command modules so they register on ``app``.
    from . import cli_report  # noqa: F401

    app(prog_name="runctrace")


if __name__ == "__main__":
    main()
