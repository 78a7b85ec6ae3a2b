"""The loop behind ``record`` and ``watch``: events in, until a deadline or a signal.

It owns what both commands share: SIGINT/SIGTERM handling, the deadline, the live
status line (backend, events, running containers, losses), and draining what the
notifier queued before it closed. The commands only say what to do with an event.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable, Iterator, Optional

from rich.console import Console

from .errors import RunctraceError
from .events import ContainerEvent
from .notifier import Notifier


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An Event set by SIGINT or SIGTERM, installed for the whole command.

    Installed before anything slow starts (BCC compiling, the first scan of runc's
    state): a signal that arrives then must stop the command cleanly, not raise
    KeyboardInterrupt at a random point (inside a finalizer it is even swallowed,
    and the command would then never stop).
    """
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


BATCH_S = 0.05
BATCH_MAX = 1000


class Session:
    def __init__(
        self,
        notifier: Notifier,
        on_event: Callable[[ContainerEvent], None],
        *,
        on_idle: Callable[[], None] = lambda: None,
        duration: Optional[float] = None,
        status_console: Optional[Console] = None,
        stop: Optional[threading.Event] = None,
    ) -> None:
        self.notifier = notifier
        self.on_event = on_event
        self.on_idle = on_idle
        self.duration = duration
        self.events = 0
        self.running: set[tuple[str, Optional[int]]] = set()
        self._console = status_console
        self._stop = stop if stop is not None else threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def status_text(self) -> str:
        s = self.notifier.stats
        return (f"{self.notifier.name}: {self.events} events, {len(self.running)} running, "
                f"{s.lost} lost, {s.missed} missed")

    def _handle(self, event: ContainerEvent) -> None:
        self.events += 1
        key = (event.container_id, event.container_pid)
        if event.type.value == "remove":
            self.running.discard(key)
        else:
            self.running.add(key)
        self.on_event(event)

    def run(self) -> None:
        """Until the deadline or ``stop`` (see :func:`stop_signals`); then close the
        notifier and drain it.

        A RunctraceError from ``on_event`` (a full disk) ends the loop and is raised
        after the notifier is closed.
        """
        deadline = time.monotonic() + self.duration if self.duration else None
        status = self._console.status(self.status_text()) if self._console else None
        try:
            if status:
                status.start()
            while not self._stop.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                event = self.notifier.get(timeout=min(0.25, remaining) if remaining else 0.25)
                if event is not None:
                    self._handle(event)
                    # Take whatever else is queued, then let events gather for a
                    # moment: this thread then wakes once per batch, not once per
                    # event (a wake-up costs more than handling an event, measured),
                    # while the notifier's own thread keeps up in real time. Events
                    # are written at flush intervals anyway; printing lags <= 50 ms.
                    for _ in range(BATCH_MAX):  # bounded: a flood still sees stop and the deadline
                        if (event := self.notifier.get(timeout=0)) is None:
                            break
                        self._handle(event)
                    self._stop.wait(BATCH_S if deadline is None else max(0.0, min(BATCH_S, deadline - time.monotonic())))
                elif self.notifier.finished:
                    # the event loop stopped by itself: report it, never spin on it
                    self.failure = self.notifier.failure or f"{self.notifier.name} notifier closed"
                    break
                else:
                    self.on_idle()
                if status:
                    status.update(self.status_text())
        finally:
            if status:
                status.stop()
            self.notifier.close()
        while (event := self.notifier.get(timeout=0)) is not None:
            self._handle(event)
        if self.failure:
            raise RunctraceError(self.failure)

    failure: Optional[str] = None


def print_event(console: Console) -> Callable[[ContainerEvent], None]:
    return lambda event: console.print(event.describe(), markup=False, highlight=False)


__all__ = ["Session", "print_event", "stop_signals", "RunctraceError"]
