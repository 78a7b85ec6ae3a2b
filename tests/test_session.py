"""The record/watch loop, driven by a notifier that stops by itself (no root needed)."""

import queue
import threading
import time

import pytest

from runctrace.errors import RunctraceError
from runctrace.events import ContainerEvent, EventType
from runctrace.backends.base import Notifier, Support
from runctrace import session as session_module
from runctrace.session import Session


class Dying(Notifier):
    """Delivers one event, then its event loop "crashes"."""

    name = "dying"

    @classmethod
    def supported(cls):
        return Support(True)

    def add_watch_container_termination(self, container_id, pid):
        pass

    def close(self):
        self._closed.set()
        self._finish_iteration()

    def start(self):
        def loop():
            self._emit(ContainerEvent(EventType.ADD, "c1", 1, None, None, time.time_ns(), self.name))
            time.sleep(0.2)
            self._loop_failed(RuntimeError("injected"))

        threading.Thread(target=loop, daemon=True).start()
        return self


def test_a_dead_event_loop_ends_the_session_with_its_reason():
    seen, idles = [], []
    session = Session(Dying().start(), seen.append, on_idle=lambda: idles.append(1), duration=10)
    start = time.monotonic()
    with pytest.raises(RunctraceError, match="dying event loop failed: RuntimeError..injected"):
        session.run()
    assert time.monotonic() - start < 2  # stopped at once, not at the deadline
    assert [e.container_id for e in seen] == ["c1"]
    assert len(idles) < 20  # idle means waiting, never spinning


def test_the_deadline_stops_a_quiet_session():
    notifier = Dying()  # never started: no events, no failure
    start = time.monotonic()
    Session(notifier, lambda e: None, duration=0.5).run()
    assert 0.4 < time.monotonic() - start < 2 and notifier.finished


def test_the_handoff_delivers_every_event_in_order_across_threads():
    """The notifier's lock-free hand-off: a producer racing a consumer that keeps
    emptying it and going back to sleep must lose no item and never sleep through one."""
    from runctrace.backends.base import _Handoff

    handoff, n, got = _Handoff(), 50_000, []

    def produce():
        for i in range(n):
            handoff.put(i)
            if i % 1000 == 0:
                time.sleep(0.001)  # let the consumer empty it and wait again

    producer = threading.Thread(target=produce)
    producer.start()
    while len(got) < n:
        got.append(handoff.get(timeout=5))  # queue.Empty here would be a missed wake-up
    producer.join()
    assert got == list(range(n))
    with pytest.raises(queue.Empty):
        handoff.get(timeout=0.01)


def test_a_stop_wakes_a_session_that_sleeps_with_no_timeout():
    """No deadline, no status line, nothing pending: the session sleeps on the
    notifier's queue with no timeout. Setting stop (what SIGINT and SIGTERM do) must
    end it at once, wherever in its loop the stop lands."""
    for delay in (0.0, 0.001, 0.01, 0.2):
        notifier = Dying()  # never started: no events
        session = Session(notifier, lambda e: None)
        threading.Timer(delay, session.stop).start()
        start = time.monotonic()
        session.run()
        assert time.monotonic() - start < 1.0, delay


def test_signals_stop_a_session_wherever_they_land():
    """SIGINT/SIGTERM, as stop_signals installs them, at any moment of the loop: the
    handler takes no lock (a handler that set an Event could deadlock on the lock
    its own thread held when the signal came), and the session ends promptly."""
    import os
    import random
    import signal

    from runctrace.session import stop_signals

    rng = random.Random(7)
    for i in range(40):
        with stop_signals() as stop:
            notifier = Dying()
            session = Session(notifier, lambda e: None, stop=stop)
            sig = signal.SIGINT if i % 2 else signal.SIGTERM
            threading.Timer(rng.uniform(0, 0.02), os.kill, (os.getpid(), sig)).start()
            start = time.monotonic()
            session.run()
            assert time.monotonic() - start < 2.0, i
            assert stop.is_set()


def test_wake_ups_before_the_flush_is_due_do_not_write_early():
    """Wake-ups before the flush is due (a stop that is not one, the status line's
    timeouts every 0.25 s) leave pending rows for their flush interval, and they
    are written once it has passed."""
    flushes, pending_since = [], time.monotonic()

    def due():
        return None if flushes else max(0.0, pending_since + 0.6 - time.monotonic())

    notifier = Dying()  # never started: no events
    session = Session(notifier, lambda e: None, on_idle=lambda: flushes.append(time.monotonic()),
                      idle_due=due, duration=1.0)
    ticker = threading.Event()

    def tick():  # wake the session often, with nothing to do
        while not ticker.wait(0.05):
            notifier.wake_consumer()

    threading.Thread(target=tick, daemon=True).start()
    session.run()
    ticker.set()
    assert len(flushes) == 1 and flushes[0] - pending_since >= 0.59


class Ticking(Dying):
    """Emits an event every ``every`` seconds, ``n`` times, then idles."""

    name = "ticking"

    def __init__(self, n: int, every: float) -> None:
        super().__init__()
        self.n, self.every, self.emitted = n, every, []

    def start(self):
        def loop():
            for i in range(self.n):
                self.emitted.append(time.monotonic())
                self._emit(ContainerEvent(EventType.ADD, f"c{i}", i + 1, None, None, time.time_ns(), self.name))
                time.sleep(self.every)

        threading.Thread(target=loop, daemon=True).start()
        return self


@pytest.mark.parametrize("hold", [False, True])
def test_hold_leaves_events_queued_until_the_pending_rows_are_due(hold):
    """With ``hold`` (record -q), events that come while rows are pending are handled
    when those rows are written, in one wake-up; without it, within a batch."""
    handled, flushes, pending = [], [], []

    def on_event(e):
        handled.append(time.monotonic())
        if not pending:
            pending.append(time.monotonic())

    def due():
        return max(0.0, pending[0] + 0.8 - time.monotonic()) if pending else None

    def flush():
        flushes.append(time.monotonic())
        pending.clear()

    notifier = Ticking(5, 0.1).start()
    Session(notifier, on_event, on_idle=flush, idle_due=due, duration=1.5,
            hold=due if hold else None).run()
    assert len(handled) == 5 and len(flushes) == 1
    delays = [h - e for h, e in zip(handled, notifier.emitted)]
    assert delays[0] < 0.1  # the first event of a quiet spell is taken at once
    if hold:
        assert all(h >= flushes[0] - 0.01 for h in handled[1:])  # the rest, just before the write
        assert flushes[0] - handled[0] >= 0.79
    else:
        assert max(delays) < 0.3


class Flood(Dying):
    """One event, then ``n`` more at once a moment later."""

    name = "flood"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def start(self):
        def loop():
            self._emit(ContainerEvent(EventType.ADD, "first", 1, None, None, time.time_ns(), self.name))
            time.sleep(0.1)
            for i in range(self.n):
                self._emit(ContainerEvent(EventType.ADD, f"c{i}", i + 2, None, None, time.time_ns(), self.name))

        threading.Thread(target=loop, daemon=True).start()
        return self


def test_a_held_backlog_is_drained_whole_before_its_write(monkeypatch):
    """More than BATCH_MAX events held until the write are all handled before it:
    a cap would leave the rest pending anew, to wait for the write after.

    (A drain that keeps a due write waiting DRAIN_MAX_S is cut short on purpose:
    see the Prefilled test. Handling 1,000 events took that long in a loaded test
    run here, so this test moves that bound out of its way: it is about the cap.)"""
    monkeypatch.setattr(session_module, "DRAIN_MAX_S", 10.0)
    events, flushes, pending = [], [], []

    def on_event(e):
        events.append(e)
        if not pending:
            pending.append(time.monotonic())

    def due():
        return max(0.0, pending[0] + 0.5 - time.monotonic()) if pending else None

    def flush():
        flushes.append(len(events))
        pending.clear()

    Session(Flood(2500).start(), on_event, on_idle=flush, idle_due=due, duration=1.3, hold=due).run()
    assert len(events) == 2501
    assert flushes == [2501]


def test_hold_waits_at_most_a_second_whatever_the_buffer_says():
    """A single file writes its row groups every minute; held events still reach
    the buffer (and its max_rows) within HOLD_MAX_S."""
    handled, pending = [], []

    def on_event(e):
        handled.append(time.monotonic())
        pending.append(1)

    notifier = Ticking(4, 0.4).start()
    Session(notifier, on_event, duration=2.5, hold=lambda: 60.0 if pending else None).run()
    assert len(handled) == 4
    assert max(h - e for h, e in zip(handled, notifier.emitted)) < 1.2



class Prefilled(Dying):
    """``n`` events queued before the session starts: a drain longer than a flush interval."""

    name = "prefilled"

    def __init__(self, n: int) -> None:
        super().__init__()
        for i in range(n):
            self._emit(ContainerEvent(EventType.ADD, f"c{i}", i + 1, None, None, 0, self.name))


def test_a_held_flood_longer_than_the_flush_interval_is_still_written_on_time():
    """The whole-backlog drain must not starve the write: rows that fall due are
    written while the flood is drained, not when it ends."""
    flushes, pending, handled = [], [], []

    def on_event(e):
        handled.append(1)
        time.sleep(0.00002)  # a consumer that takes its time: the drain lasts ~2 s
        if not pending:
            pending.append(time.monotonic())

    def due():
        return max(0.0, pending[0] + 0.2 - time.monotonic()) if pending else None

    def flush():
        flushes.append(time.monotonic() - pending[0])
        pending.clear()

    session = Session(Prefilled(30_000), on_event, on_idle=flush, idle_due=due, duration=4, hold=due)
    session.run()
    assert len(handled) == 30_000
    assert len(flushes) >= 3
    assert max(flushes) < 0.5  # due after 0.2 s
