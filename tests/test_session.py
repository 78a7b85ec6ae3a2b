"""The record/watch loop, driven by a notifier that stops by itself (no root needed)."""

import queue
import threading
import time

import pytest

from runctrace.errors import RunctraceError
from runctrace.events import ContainerEvent, EventType
from runctrace.notifier import Notifier, Support
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
    from runctrace.notifier import _Handoff

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


class Steady(Notifier):
    """Emits ``n`` events from its own thread, ``gap`` seconds apart, once started."""

    name = "steady"

    def __init__(self, n, gap):
        super().__init__()
        self.n, self.gap = n, gap
        self.loop_thread = None

    @classmethod
    def supported(cls):
        return Support(True)

    def add_watch_container_termination(self, container_id, pid):
        pass

    def close(self):
        self._closed.set()
        self._finish_iteration()

    def emit_one(self, i):
        self._emit(ContainerEvent(EventType.ADD, f"c{i}", i, None, None, time.time_ns(), self.name))

    def start(self, first=0):
        def loop():
            for i in range(first, self.n):
                self.emit_one(i)
                time.sleep(self.gap)

        self.loop_thread = threading.Thread(target=loop, daemon=True)
        self.loop_thread.start()
        return self


def test_a_tap_sees_every_event_once_in_order_including_those_queued_before_it():
    notifier = Steady(300, 0.0005)
    for i in range(3):  # emitted before the tap: queued
        notifier.emit_one(i)
    seen, threads = [], set()

    def tap(event):
        seen.append(event.container_pid)
        threads.add(threading.current_thread())

    notifier.start(first=3)
    time.sleep(0.01)  # the tap lands in the middle of the stream
    notifier.tap(tap, also_queue=False)
    notifier.loop_thread.join()
    assert seen == list(range(300))
    assert notifier.loop_thread in threads  # the tap ran where the events came from
    assert notifier.get(timeout=0) is None  # also_queue=False: nothing left queued


def test_a_tap_that_also_queues_leaves_the_queue_complete():
    notifier = Steady(50, 0.0005)
    notifier.emit_one(0)
    seen = []
    notifier.start(first=1)
    notifier.tap(lambda e: seen.append(e.container_pid))
    notifier.loop_thread.join()
    queued = []
    while (event := notifier.get(timeout=0)) is not None:
        queued.append(event.container_pid)
    assert seen == queued == list(range(50))


class Buffer:
    """A recorder's buffering and flush schedule, as Session sees them."""

    def __init__(self, interval):
        self.interval, self.rows, self.written, self.flushes, self.since = interval, [], [], 0, None
        self.threads = set()

    def write(self, event):
        self.threads.add(threading.current_thread())
        if not self.rows:
            self.since = time.monotonic()
        self.rows.append(event.container_pid)

    def due(self):
        return None if not self.rows else max(0.0, self.since + self.interval - time.monotonic())

    def flush(self):
        self.flushes += 1
        rows, self.rows = self.rows, []
        self.written += rows


def test_inline_events_wake_the_session_once_per_flush_not_per_event():
    """``record``: rows buffered on the notifier's thread; the session's own thread
    wakes to write them once per flush interval, never once per event."""
    notifier = Steady(100, 0.01)  # 100 events over ~1.1 s
    buffer = Buffer(interval=0.4)
    session = Session(notifier, on_event_inline=buffer.write, on_idle=buffer.flush, idle_due=buffer.due,
                      duration=1.6)
    notifier.start()
    session.run()
    buffer.flush()  # what record's close() does
    assert buffer.written == list(range(100)) and session.events == 100
    assert buffer.threads == {notifier.loop_thread}
    assert 2 <= buffer.flushes <= 5, buffer.flushes  # ~1.1 s of events / 0.4 s, + close
