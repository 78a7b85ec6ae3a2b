"""The loop behind ``record`` and ``watch``: events in, until a deadline or a signal.

It owns what both commands share: SIGINT/SIGTERM handling, the deadline, the live
status line (backend, events, running containers, losses), and draining what the
notifier queued before it closed. The commands only say what to do with an event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Callable, Iterator, Optional

from rich.console import Console

from runctrace.errors import RunctraceError
from runctrace.events import ContainerEvent
from runctrace.backends.base import Notifier, log
from runctrace.safetext import printable


class Stop(threading.Event):
    """The session's stop flag: setting it also wakes whatever the session waits on.

    The session sleeps on its notifier's queue, not on this flag, with no timeout
    when nothing is due: a signal handler that only set a flag would go unnoticed
    until the next event.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wakers: list[Callable[[], None]] = []

    def also_wake(self, waker: Callable[[], None]) -> None:
        self._wakers.append(waker)

    def set(self) -> None:
        super().set()
        for waker in self._wakers:
            waker()


@contextlib.contextmanager
def stop_signals() -> Iterator[Stop]:
    """A :class:`Stop` set by SIGINT or SIGTERM, installed for the whole command.

    Installed before anything slow starts (BCC compiling, the first scan of runc's
    state): a signal that arrives then must stop the command cleanly, not raise
    KeyboardInterrupt at a random point (inside a finalizer it is even swallowed,
    and the command would then never stop).

    The handler itself only writes a byte to a pipe. Python runs handlers in the
    main thread between two bytecodes, possibly while that thread holds the lock
    of the very Event the handler would set (inside ``Event.wait`` or ``clear``):
    a handler that took a lock could wait for itself forever. A thread blocked on
    the pipe's other end sets the stop, and wakes the session, instead.
    """
    stop = Stop()
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(w, False)

    def handler(*_) -> None:
        try:
            os.write(w, b"s")
        except BlockingIOError:
            pass  # the pipe is full of earlier signals: the watcher will see those

    def watcher() -> None:
        if os.read(r, 1) == b"s":
            stop.set()

    thread = threading.Thread(target=watcher, name="runctrace-signals", daemon=True)
    thread.start()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        try:
            os.write(w, b"x")  # let the watcher go, without setting the stop
        except BlockingIOError:
            pass
        thread.join()
        os.close(r)
        os.close(w)


BATCH_S = 0.05
BATCH_MAX = 1000
# How long a drain may keep a write that fell due waiting (see Session's doc).
DRAIN_MAX_S = BATCH_S
STATUS_S = 0.25
EARLY_S = 0.002  # a timed wait may end this much before the flush it waited for
# The longest events wait in the queue under ``hold``: the buffer they wait for
# may be written only every minute (a single file's row groups), and only a
# handled event counts toward its max_rows: a minute of a flood must not pile up
# unconverted.
HOLD_MAX_S = 1.0


class Session:
    """Events from ``notifier`` to ``on_event``, waking only when there is work.

    Each wake-up handles everything queued, then sleeps ``BATCH_S`` while more
    gather: one wake-up per batch, not per event (a wake-up costs more than handling
    an event, measured). Printing lags at most that.
    ``idle_due``: seconds until ``on_idle`` must run (the recorder's next flush of
    pending rows), or None if nothing is pending. Nothing pending, no deadline and
    no status line: the session sleeps until an event or a signal arrives.

    ``hold``: for a consumer that shows nothing per event (``record -q``), seconds
    until its pending rows are written, or None. Events that come meanwhile would
    only wait in its buffer for that same write, so they wait in the queue
    instead, and the session wakes once per write, not once per batch. On a host
    where containers start now and then, each wake-up finds the recorder's memory
    gone cold and pays for it (docs/benchmarks-history.md, "Where the CPU goes"): two wake-ups
    a second, not two per container. Such a wake-up drains the whole queue
    before the write (a cap would leave the rest to wait for the write after),
    looking at the stop, the deadline and the write every ``BATCH_MAX`` events:
    a flood that outlasts the flush interval still gets its rows written on time.
    """

    def __init__(
        self,
        notifier: Notifier,
        on_event: Callable[[ContainerEvent], None],
        *,
        on_idle: Callable[[], None] = lambda: None,
        idle_due: Callable[[], Optional[float]] = lambda: None,
        duration: Optional[float] = None,
        status_console: Optional[Console] = None,
        stop: Optional[Stop] = None,
        hold: Optional[Callable[[], Optional[float]]] = None,
        status_extra: Callable[[], str] = lambda: "",
        notice: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.notifier = notifier
        self.on_event = on_event
        self.on_idle = on_idle
        self.idle_due = idle_due
        self.duration = duration
        self.hold = hold
        self.status_extra = status_extra
        # With no status line (not a terminal), a change of status_extra (writes
        # failing, writes resumed) is told through ``notice`` instead: a recorder
        # under systemd must not fail its writes in silence until it stops.
        self.notice = notice
        self._told = ""
        self.events = 0
        self.failed = 0  # events on_event failed on (logged; the session went on)
        self.running: set[tuple[str, Optional[int]]] = set()
        self._console = status_console
        self._stop = stop if stop is not None else Stop()
        self._stop.also_wake(notifier.wake_consumer)

    def stop(self) -> None:
        self._stop.set()

    def status_text(self) -> str:
        s = self.notifier.stats
        text = (f"{self.notifier.name}: {self.events} events, {len(self.running)} running, "
                f"{s.lost} lost, {s.missed} missed")
        if s.errors or self.failed:
            text += f", {s.errors + self.failed} failed"
        return text + self.status_extra()

    def _tell(self, status) -> None:
        """Refresh the status line, or tell a change of the extra status without one."""
        if status:
            status.update(self.status_text())
            return
        extra = self.status_extra()
        if extra != self._told:
            self.notice(extra.lstrip(", ") or "writes resumed")
            self._told = extra

    def _handle(self, event: ContainerEvent) -> None:
        self.events += 1
        key = (event.container_id, event.container_pid)
        if event.type.value == "remove":
            self.running.discard(key)
        else:
            self.running.add(key)
        try:
            self.on_event(event)
        except RunctraceError:
            raise  # raised on purpose: the recording cannot go on (see run())
        except Exception as err:  # printing or writing one event must not end the session
            self.failed += 1
            log.error("runctrace: handling %s failed; carrying on: %r",
                      printable(event.container_id), err, exc_info=err)

    def run(self) -> None:
        """Until the deadline or ``stop`` (see :func:`stop_signals`); then close the
        notifier and drain it.

        A RunctraceError from ``on_event`` ends the loop and is raised after the
        notifier is closed; any other exception from it is counted (``failed``) and
        the session goes on. (A full disk is no error here: the recorder keeps its
        rows and says so through ``status_extra``.)
        """
        deadline = time.monotonic() + self.duration if self.duration else None
        status = self._console.status(self.status_text()) if self._console else None
        try:
            if status:
                status.start()
            while not self._stop.is_set():
                now = time.monotonic()
                if deadline is not None and deadline <= now:
                    break
                waits = [w for w in (
                    None if deadline is None else deadline - now,
                    STATUS_S if status else None,
                    self.idle_due(),
                ) if w is not None]
                event = self.notifier.get(timeout=max(0.0, min(waits)) if waits else None)
                if event is not None:
                    drain_start = time.monotonic()
                    self._handle(event)
                    handled = 1
                    while (event := self.notifier.get(timeout=0)) is not None:
                        self._handle(event)
                        handled += 1
                        # bounded: a flood still sees stop, the deadline, and a
                        # write it has kept waiting (a backlog drains in a few ms;
                        # a flood that never lets the queue empty must not starve
                        # the write, the crash-loss bound)
                        if handled % BATCH_MAX == 0 and (self.hold is None or self._stop.is_set() or (
                                deadline is not None and time.monotonic() >= deadline) or (
                                self._write_due() and time.monotonic() - drain_start >= DRAIN_MAX_S)):
                            break
                    # Write now what would be due before the next wake-up.
                    due = self.idle_due()
                    if due is not None and due <= BATCH_S:
                        self.on_idle()
                    self._tell(status)
                    # let the next events gather (see the class doc)
                    pause = max(BATCH_S, min(HOLD_MAX_S, (self.hold and self.hold()) or 0.0))
                    if status:
                        pause = min(pause, max(BATCH_S, STATUS_S))
                    if deadline is not None:
                        pause = max(0.0, min(pause, deadline - time.monotonic()))
                    self._stop.wait(pause)
                elif self.notifier.finished:
                    # the event loop stopped by itself: report it, never spin on it
                    self.failure = self.notifier.failure or f"{self.notifier.name} notifier closed"
                    break
                else:  # a timeout, or a wake-up (stop, the status line): write what is due
                    due = self.idle_due()
                    if due is not None and due <= EARLY_S:
                        self.on_idle()
                    self._tell(status)
        finally:
            if status:
                status.stop()
            self.notifier.close()
        while (event := self.notifier.get(timeout=0)) is not None:
            self._handle(event)
        if self.failure:
            raise RunctraceError(self.failure)

    def _write_due(self) -> bool:
        due = self.idle_due()
        return due is not None and due <= 0

    failure: Optional[str] = None


def print_event(console: Console) -> Callable[[ContainerEvent], None]:
    return lambda event: console.print(event.describe(), markup=False, highlight=False)


__all__ = ["Session", "print_event", "stop_signals", "RunctraceError"]
