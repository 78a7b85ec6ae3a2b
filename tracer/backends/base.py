"""The notifier interface that every backend implements.

It follows Inspektor Gadget's ``runcfanotify`` (v0.12): ``supported()``, a notifier
built with a callback that receives :class:`~runctrace.events.ContainerEvent`, and
``add_watch_container_termination(container_id, pid)`` for containers found by other
means. On top of that a notifier is a context manager and, when built without a
callback, an iterator of events::

    with FanotifyNotifier() as notifier:
        for event in notifier:
            print(event.describe())

Each backend runs one event loop on one thread for all containers; ``close()`` stops
it promptly and closes every fd it opened.
"""

from __future__ import annotations

import abc
import collections
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, Optional

from runctrace.events import ContainerEvent

log = logging.getLogger("runctrace")

Callback = Callable[[ContainerEvent], None]


@dataclass(frozen=True)
class Support:
    """Whether a backend can run here; ``reason`` says why not (or what it will use)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class Stats:
    """Counters a notifier keeps; ``lost`` must never be silently non-zero."""

    adds: int = 0
    initial: int = 0  # containers found already running
    removes: int = 0
    lost: int = 0  # kernel queue overflows / dropped messages
    missed: int = 0  # runc execs whose arguments could not be read in time, and that may have made a container
    # runc execs that ended before their arguments were read and made no container:
    # short calls (state, delete, kill...) and creates that failed at once (fanotify)
    unread: int = 0
    failed_creates: int = 0  # create/run calls that exited without making a container
    # events whose handling failed in a way no check foresaw (a bug, or an input no
    # parser expected): each is logged, and the loop carries on (resolve._total)
    errors: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


_CLOSED = object()


class _Handoff:
    """Events from the loop thread to one consumer thread, cheaply.

    ``queue.Queue`` takes a lock and signals a condition on every put and every get:
    ~40 us an event on both threads during a burst (measured), more than the rest
    of recording an event. Here a put is a deque append (atomic in CPython), plus
    one ``Event.set()`` only when the consumer may be waiting; a consumer that
    takes events in batches (``Session``) finds them queued and waits for nothing.

    (Not ``queue.SimpleQueue``: in CPython 3.11 a signal arriving near the end of
    its ``get(timeout)`` can leave it waiting forever, and the main thread's get is
    exactly where SIGINT lands. ``Event.wait`` has no such bug.)
    """

    def __init__(self) -> None:
        self._items: "collections.deque[object]" = collections.deque()
        self._ready = threading.Event()  # set after an append; cleared by the consumer only
        self._interrupted = False

    def put(self, item: object) -> None:
        self._items.append(item)
        if not self._ready.is_set():
            self._ready.set()

    def get(self, timeout: Optional[float] = None) -> object:
        """The oldest item; raises ``queue.Empty`` after ``timeout`` seconds (None: never)."""
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                pass
            # Clear, then look again: an append between the popleft and the clear
            # has set the flag already, and would otherwise never wake us.
            self._ready.clear()
            if self._items:
                continue
            # An interrupt() just before the clear above must not be lost with it.
            if self._interrupted or not self._ready.wait(timeout) or not self._items:
                self._interrupted = False
                raise queue.Empty

    def interrupt(self) -> None:
        """Wake the consumer now: its get() raises ``queue.Empty`` if nothing came."""
        self._interrupted = True
        self._ready.set()


class Notifier(abc.ABC):
    name: ClassVar[str]

    def __init__(self, callback: Optional[Callback] = None) -> None:
        self._callback = callback
        self._queue = _Handoff()
        self.stats = Stats()
        self._closed = threading.Event()

    # ----------------------------------------------------------------- the interface

    @classmethod
    @abc.abstractmethod
    def supported(cls) -> Support:
        """Can this backend run on this host, as this user? Never raises."""

    @abc.abstractmethod
    def add_watch_container_termination(self, container_id: str, pid: int) -> None:
        """Emit a REMOVE event for ``container_id`` when process ``pid`` exits.

        For containers found by other means (e.g. already running at start). If the
        process is already gone, the REMOVE event is emitted at once.
        """

    def discover_running(self, timeout: float = 5.0) -> None:
        """Emit an INITIAL event for each container already running (if the backend can)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the event loop and release every kernel resource. Idempotent."""

    # ------------------------------------------------------------ delivery of events

    def _emit(self, event: ContainerEvent) -> None:
        kind = event.type.value
        if kind == "add":
            self.stats.adds += 1
        elif kind == "initial":
            self.stats.initial += 1
        else:
            self.stats.removes += 1
        if self._callback is None:
            self._queue.put(event)
            return
        try:
            self._callback(event)
        except Exception:  # a consumer bug must not kill the event loop
            log.exception("runctrace: callback raised on %s", event.describe())

    def _finish_iteration(self) -> None:
        self._queue.put(_CLOSED)

    def _loop_failed(self, err: BaseException) -> None:
        """The event loop died: say so to consumers. ``close()`` still releases everything."""
        log.error("runctrace: %s event loop failed: %r", self.name, err, exc_info=err)
        self.failure = f"{self.name} event loop failed: {err!r}"
        self._finish_iteration()

    failure: Optional[str] = None  # why the event loop stopped by itself, if it did

    @property
    def finished(self) -> bool:
        """No event will come any more: closed, or the event loop stopped."""
        return self._closed.is_set() or self.failure is not None

    def get(self, timeout: Optional[float] = None) -> Optional[ContainerEvent]:
        """The next event, or None after ``timeout`` seconds or once closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._queue.put(_CLOSED)  # keep later get() calls from blocking
            return None
        return item  # type: ignore[return-value]

    def wake_consumer(self) -> None:
        """Make a get() that is waiting return now (None if no event came)."""
        self._queue.interrupt()

    def __iter__(self) -> Iterator[ContainerEvent]:
        if self._callback is not None:
            raise TypeError("a notifier built with a callback delivers events to it, not to iteration")
        while True:
            try:
                item = self._queue.get()
            except queue.Empty:  # wake_consumer(): not the end
                continue
            if item is _CLOSED:
                self._queue.put(_CLOSED)
                return
            yield item  # type: ignore[misc]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LoopNotifier(Notifier):
    """A notifier whose one event-loop thread owns a :class:`runctrace.runc.tracker.Tracker`.

    Other threads never touch the tracker: they queue a request and wake the loop
    through an eventfd, which the backend registers in its epoll set and hands to
    :meth:`_serve_requests` when it is readable.
    """

    _tracker = None

    def __init__(self, callback: Optional[Callback] = None) -> None:
        super().__init__(callback)
        self._requests: "collections.deque[tuple]" = collections.deque()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # Set by the backend when the kernel dropped events or a runc call went
        # unread: the loop then looks at runc's state on disk (Tracker.resync).
        self._resync = False

    def add_watch_container_termination(self, container_id: str, pid: int) -> None:
        self._request(("watch", container_id, pid))

    def discover_running(self, timeout: float = 5.0) -> None:
        """Emit an INITIAL event for every container runc runs now, and watch it.

        Returns once that is done (or after ``timeout``), so that a caller that then
        announces "recording" has its initial events ahead of everything after.
        """
        done = threading.Event()
        self._request(("discover", done))
        done.wait(timeout)

    # The loop thread's nice value. At normal priority the loop loses races on a
    # busy host: a short-lived `runc run` deletes its state.json a few ms after
    # writing it, and short runc calls exit before their arguments are read, so
    # PIDs go unread and the detection delay grows a long tail. The loop sleeps in
    # epoll, so a high priority costs nothing while idle; under churn it takes its
    # millisecond per container ahead of runc (docs/benchmarks-history.md).
    LOOP_NICE = -15

    def _loop_thread_started(self) -> None:
        """Call first thing in the loop thread: its priority and its name are its own."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LoopNotifier.LOOP_NICE)
        except OSError:
            pass  # not root: the loop still works, with a longer tail under load
        try:
            # the kernel's name for the thread, so `top -H` and /proc tell the
            # recording thread from the notifier's (15 bytes at most)
            with open("/proc/thread-self/comm", "w") as f:
                f.write(f"runctrace-{self.name}"[:15])
        except OSError:
            pass

    def _message_failed(self, what: str, err: BaseException) -> None:
        """Handling one kernel message failed: count it, log it, and carry on with
        the next. The loop must outlive any one container's input."""
        self.stats.errors += 1
        log.error("runctrace: %s: handling %s failed; the recorder carries on: %r",
                  self.name, what, err, exc_info=err)

    @property
    def running_containers(self) -> int:
        return len(self._tracker.containers) if self._tracker is not None else 0

    def _request(self, request: tuple) -> None:
        self._requests.append(request)
        self._wake_loop()

    def _wake_loop(self) -> None:
        try:
            os.eventfd_write(self._wake, 1)
        except OSError:  # closed
            pass

    def _serve_shared(self, ready: set[int]) -> None:
        """What every backend's loop does in each wake-up, after its own fds.

        ``ready``: the fds epoll returned. The tracker's state-file watch, then
        requests from other threads, then a resync if the backend asked for one:
        whatever a missed runc call started and still runs is on disk, in runc's
        state.
        """
        for fd in self._tracker.states.fds():
            if fd in ready:
                self._tracker.read_states(fd)
        if self._wake in ready:
            self._serve_requests()
        if self._resync:
            self._resync = False
            self._tracker.resync()

    def _serve_requests(self) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        from runctrace.events import EventType

        while self._requests:
            request = self._requests.popleft()
            if request[0] == "discover":
                try:
                    self._tracker.discover(EventType.INITIAL)
                finally:
                    request[1].set()
            else:
                self._tracker.watch_pid(request[1], request[2])

    def _close_wake(self) -> None:
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1
