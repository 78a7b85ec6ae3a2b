"""The record/watch loop, driven by a notifier that stops by itself (no root needed)."""

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
