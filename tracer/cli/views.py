"""How one event is shown to a person or a script (``watch``)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from runctrace.events import ContainerEvent, process_args
from runctrace.safetext import printable
from runctrace.store.schema import event_to_row

EVENT_TABLE_HEADER = f"{'TIME (UTC)':<23} {'EVENT':<7} {'CONTAINER':<24} {'PID':>7} {'MANAGER':<10} {'EXIT':<9} COMMAND"


def event_table_row(event: ContainerEvent) -> str:
    when = datetime.fromtimestamp(event.time_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    pid = "-" if event.container_pid is None else str(event.container_pid)
    if event.signal is not None:
        ended = f"sig {event.signal}"
    elif event.exit_code is not None:
        ended = f"exit {event.exit_code}"
    else:
        ended = ""
    # everything from outside escaped: an argv or an ID must not draw on the terminal
    command = printable(" ".join(process_args(event.container_config))[:60])
    if event.error:
        command += f"  [{printable(event.error)}]"
    cid = printable(event.container_id[:24])
    return f"{when:<23} {event.type.value:<7} {cid:<24} {pid:>7} {event.manager or '':<10} {ended:<9} {command}"


def event_json(event: ContainerEvent, keep_env: bool = False) -> str:
    """The event as the recording's row would hold it (same names, same redaction,
    and text that is not UTF-8 escaped the same way, named in ``escaped``)."""
    row = event_to_row(event, keep_env=keep_env)
    row["time"] = datetime.fromtimestamp(event.time_ns / 1e9, timezone.utc).isoformat()
    row["config"] = json.loads(row.pop("config_json")) if row.get("config_json") else None
    if row.get("annotations") is not None:
        row["annotations"] = dict(row["annotations"])
    return json.dumps(row, separators=(",", ":"))
