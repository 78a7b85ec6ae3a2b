"""A notifier that delivers the events it is given: for tests, notebooks and demos.

It is a real :class:`~runctrace.backends.base.Notifier` (the same queue, callback,
iteration and stats), so code written against a backend runs unchanged on it,
without root or a kernel::

    from runctrace.backends.fake import FakeNotifier

    notifier = FakeNotifier()
    notifier.push(ContainerEvent(EventType.ADD, "c1", 42, None, None, time.time_ns(), "fake"))
    notifier.close()                 # iteration ends after the events pushed
    for event in notifier: ...
"""

from __future__ import annotations

from typing import Optional

from runctrace.events import ContainerEvent
from runctrace.backends.base import Callback, Notifier, Support


class FakeNotifier(Notifier):
    name = "fake"

    def __init__(self, callback: Optional[Callback] = None, runc_paths: tuple[str, ...] = ()) -> None:
        super().__init__(callback)
        self.watched: dict[str, int] = {}

    @classmethod
    def supported(cls, runc_paths: tuple[str, ...] = ()) -> Support:
        return Support(True, "delivers only the events it is given")

    def push(self, event: ContainerEvent) -> None:
        """Deliver ``event`` as a backend's loop would (counted in ``stats``)."""
        self._emit(event)

    def fail(self, err: BaseException) -> None:
        """End the "event loop" as a backend's does when it dies."""
        self._loop_failed(err)

    def add_watch_container_termination(self, container_id: str, pid: int) -> None:
        self.watched[container_id] = pid

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._finish_iteration()
