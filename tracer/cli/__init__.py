"""The ``runctrace`` command line. Commands stay thin: parse, call the library, print.

Every error runctrace raises on purpose is a :class:`RunctraceError`; it reaches the
user as one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.text import Text

# `record` writes Arrow buffers with glibc's malloc, not pyarrow's default mimalloc,
# which hands out fresh pages where malloc reuses the same warm ones: a flush of 50
# rows touched ~1,500 fewer pages (counted with /proc/PID/clear_refs). On a VM that
# charges for each page touched after a pause, pages are what a flush costs
# (docs/benchmarks-history.md). Arrow reads the variable once, when it loads: hence here, before
# the imports below. Not for `report`, whose large tables mimalloc serves well; and
# a user's own choice stands.
if sys.argv[1:2] == ["record"]:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from runctrace.backends import CHOICES, open_notifier
from runctrace.errors import RunctraceError
from runctrace.store import default_output, open_recorder, recovery_notes, write_status
from runctrace.session import Session, print_event, stop_signals
from runctrace.safetext import printable
from runctrace.cli.views import EVENT_TABLE_HEADER, event_json, event_table_row

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
            # the message may quote a path or a name from outside: never markup, never raw
            line = Text("runctrace: error:", style="bold red") + Text(" " + printable(str(err)))
            Console(stderr=True).print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


RECORD_EXAMPLES = """
Examples:

  runctrace record --backend fanotify                 # until Ctrl-C, to the dataset ./runctrace-data

  runctrace record -o /var/lib/runctrace -d 600       # ten minutes; crash-safe, host=/date= partitions

  runctrace record -o node.parquet                    # one file, complete once stopped

  runctrace record --runc-path /opt/bin/runc          # a runc outside the usual paths

Then: runctrace report FILE
"""


@app.command(epilog=RECORD_EXAMPLES)
@_one_line_errors
def record(
    backend: str = typer.Option("auto", "--backend", "-b", help=f"One of: {', '.join(CHOICES)}."),
    output: str = typer.Option(
        default_output(), "--output", "-o",
        help="A directory (a crash-safe dataset, partitioned host=/date=) or a FILE.parquet (complete once stopped).",
    ),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", min=0, help="Stop after this many seconds. [default: until Ctrl-C or SIGTERM]"),
    runc_path: List[str] = typer.Option([], "--runc-path", help="Also watch this runc binary (repeatable). Also: $RUNCTRACE_RUNC_PATHS."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print each event."),
    keep_env: bool = typer.Option(False, "--keep-env", help="Keep environment values in the recorded spec (redacted by default: they often hold secrets)."),
    flush_interval: float = typer.Option(1.0, "--flush-interval", min=0.05, help="Seconds between writes; a crash loses at most this much."),
    file_interval: float = typer.Option(
        60.0, "--file-interval", min=0,
        help="Seconds between Parquet files. In between, a dataset's rows go to a journal that the next `record` on it recovers after a crash. 0: a file at every write.",
    ),
    compact: bool = typer.Option(False, "--compact", help="On exit, merge each partition's small files into one."),
    initial: bool = typer.Option(True, "--initial/--no-initial", help="Report containers already running at start as 'initial' events."),
    allow_untrusted_dir: bool = typer.Option(
        False, "--allow-untrusted-dir",
        help="Write even to a directory that another user owns or can write (or below one): "
             "refused by default, since that user could replace what is written.",
    ),
) -> None:
    """Record containers that runc creates and ends, to Parquet."""
    with stop_signals() as stop:
        notifier, why = open_notifier(backend, runc_paths=tuple(runc_path))
        try:
            recorder = open_recorder(output, keep_env=keep_env, flush_interval=flush_interval,
                                     file_interval=file_interval, allow_untrusted_dir=allow_untrusted_dir)
        except RunctraceError:
            notifier.close()
            raise
        recorder.stats_source = notifier.stats.as_dict
        recorder.backend = notifier.name
        out = Console(highlight=False, soft_wrap=True)
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        show = print_event(out)
        for line in recovery_notes(recorder):
            err.print(f"runctrace: {printable(line)}", markup=False)

        def on_event(event):
            recorder.write(event)
            if not quiet:
                show(event)

        status_console = (out if out.is_terminal else err) if err.is_terminal else None
        session = Session(notifier, on_event,
                          on_idle=recorder.flush, idle_due=recorder.flush_due_in,
                          duration=duration, status_console=status_console, stop=stop,
                          hold=recorder.rows_due_in if quiet else None,
                          status_extra=lambda: write_status(recorder),
                          notice=lambda text: err.print(f"runctrace: {printable(text)}", markup=False))
        try:
            if initial:  # before announcing: what runs now is "initial", anything later an "add"
                notifier.discover_running()
            err.print(f"runctrace: {why}; recording to {printable(output)}" + (f" for {duration:g}s" if duration else "; Ctrl-C to stop"))
            session.run()
        finally:
            stats = notifier.stats.as_dict()
            # a RecordingError here (a disk still full) says in one line what was lost
            recorder.close(stats=stats, backend=notifier.name, compact=compact)
        dropped = f", {recorder.dropped} dropped while writes failed" if recorder.dropped else ""
        err.print(
            f"runctrace: wrote {recorder.rows_written} events to {printable(output)} "
            f"({stats['adds']} add, {stats['initial']} initial, {stats['removes']} remove, "
            f"{stats['lost']} lost, {stats['missed']} missed, {stats['unread']} unread{dropped})"
        )



WATCH_EXAMPLES = """
Examples:

  runctrace watch                        # a live table, like `docker events`

  runctrace watch --json | jq .          # JSON lines, one per event
"""


@app.command(epilog=WATCH_EXAMPLES)
@_one_line_errors
def watch(
    backend: str = typer.Option("auto", "--backend", "-b", help=f"One of: {', '.join(CHOICES)}."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", min=0, help="Stop after this many seconds."),
    runc_path: List[str] = typer.Option([], "--runc-path", help="Also watch this runc binary (repeatable)."),
    initial: bool = typer.Option(True, "--initial/--no-initial", help="Show containers already running at start."),
    keep_env: bool = typer.Option(False, "--keep-env", help="Show environment values in --json output."),
) -> None:
    """Show container events live, as they happen."""
    with stop_signals() as stop:
        notifier, why = open_notifier(backend, runc_paths=tuple(runc_path))
        out = Console(highlight=False, soft_wrap=True)
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"runctrace: {why}")
        if as_json:
            on_event = lambda event: out.print(event_json(event, keep_env), markup=False)  # noqa: E731
        else:
            out.print(EVENT_TABLE_HEADER, markup=False)
            on_event = lambda event: out.print(event_table_row(event), markup=False)  # noqa: E731
        status_console = err if err.is_terminal else None
        if initial:
            notifier.discover_running()
        Session(notifier, on_event, duration=duration, status_console=status_console, stop=stop).run()



def main() -> None:
    # Load other command modules so they register on ``app``.
    from runctrace.cli import churn, doctor, report  # noqa: F401

    app(prog_name="runctrace")


if __name__ == "__main__":
    main()
