"""The fanotify backend's event loop: one thread around one epoll.

It reads the process-events connector in batches (module doc, 2.) and the
fanotify group when the correlator asks (at the first EXEC of a batch), hands
both to the :class:`~.correlator.Correlator`, and does what every loop does
(:class:`~runctrace.backends.base.LoopNotifier`): the state-file watch, requests
from other threads, a look at runc's state on disk when something was missed.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from typing import Optional

from runctrace import _sys
from runctrace.backends.base import Callback, LoopNotifier, Support, log
from runctrace.backends.fanotify.binwatch import BinaryWatch
from runctrace.backends.fanotify.correlator import Correlator, ProcReaders
from runctrace.errors import NotSupported
from runctrace.runc.binaries import RUNC_INIT_COMM, RuncBinary, find_runc
from runctrace.runc.tracker import Tracker

# Coalescing (module doc, 2.): when the connector wakes the loop, sleep this long
# before reading, so that the messages that follow the first are read with it.
# A shorter hold costs more CPU per container in a burst; a longer one takes the
# delay counted from runc's write of state.json past its 10 ms target.
_COALESCE_NS = 3_000_000


class FanotifyNotifier(LoopNotifier):
    name = "fanotify"

    @classmethod
    def supported(cls, runc_paths: tuple[str, ...] = ()) -> Support:
        if os.geteuid() != 0:
            return Support(False, "needs root (fanotify and the process-events connector need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
        try:
            fd = _sys.fanotify_init(_sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC, os.O_RDONLY)
            os.close(fd)
        except OSError as err:
            if err.errno == errno.EPERM:
                return Support(False, "fanotify_init: operation not permitted (needs CAP_SYS_ADMIN: run as root)")
            return Support(False, f"fanotify_init failed: {err.strerror} (kernel needs CONFIG_FANOTIFY)")
        except AttributeError:
            return Support(False, "libc has no fanotify_init")
        try:
            _sys.open_proc_connector(exec_events=False).close()
        except OSError as err:
            if err.errno == errno.EPERM:
                return Support(False, "process-events connector: operation not permitted (needs CAP_NET_ADMIN: run as root)")
            return Support(False, f"process-events connector unavailable: {err.strerror} (kernel needs CONFIG_PROC_EVENTS)")
        try:
            binaries = find_runc(runc_paths)
        except NotSupported as err:
            return Support(False, str(err))
        return Support(True, "watching " + ", ".join(b.path for b in binaries))

    def __init__(self, callback: Optional[Callback] = None, runc_paths: tuple[str, ...] = ()) -> None:
        super().__init__(callback)
        if os.geteuid() != 0:
            raise NotSupported("the fanotify backend needs root")
        self._bins: Optional[BinaryWatch] = None
        self._cn = None
        self._epoll = None
        self._tracker: Optional[Tracker] = None
        try:
            self._bins = BinaryWatch(runc_paths)
            self._cn = _sys.open_proc_connector(comm=RUNC_INIT_COMM)
            # one reused buffer: socket.recv(n) allocates n bytes first, and a large
            # n is an mmap and munmap per message. A datagram holds one message of
            # ~80 bytes; a wake-up's datagrams are taken in one recvmmsg.
            self._cn_rx = _sys.DatagramReader(self._cn.fileno())
            self._correlator = Correlator(
                self.stats, ProcReaders(runc_exe=self._bins.runc_exe),
                drain_runc_execs=self._read_fanotify, sole_runtime=self._bins.sole_runtime,
                ask_resync=self._ask_resync,
            )
            self._tracker = Tracker(self.name, self._emit, self.stats, self._correlator.watch, sees_inits=True)
            self._correlator.tracker = self._tracker
            self._epoll = select.epoll(flags=select.EPOLL_CLOEXEC)
            # not the fanotify group: it is read when the connector reports an exec (module doc, 2.)
            for fd in (self._cn.fileno(), self._bins.ino, self._wake, *self._tracker.states.fds()):
                self._epoll.register(fd, select.EPOLLIN)
        except OSError as err:
            self._release()
            raise NotSupported(f"cannot set up the fanotify backend: {err.strerror}") from err
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name="runctrace-fanotify", daemon=True)
        self._thread.start()

    @property
    def binaries(self) -> list[RuncBinary]:
        """The runc binaries watched now."""
        return self._bins.binaries

    # ------------------------------------------------------------------ public API

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake_loop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._release()
        self._finish_iteration()

    def _release(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        if self._cn is not None:
            self._cn.close()
        if self._tracker is not None:
            self._tracker.close()
        if self._bins is not None:
            self._bins.close()
        self._close_wake()

    # ------------------------------------------------------------------ event loop

    def _run(self) -> None:
        self._loop_thread_started()
        try:
            while not self._closed.is_set():
                # Sleep without a timeout unless something waits on a deadline: an
                # idle recorder wakes up for nothing.
                timeout = 1.0 if self._correlator.pending_exec else None
                try:
                    ready = self._epoll.poll(timeout)
                except InterruptedError:
                    continue
                fds = {fd for fd, _ in ready}
                if self._cn.fileno() in fds:
                    self._read_connector(hold=True)
                if self._bins.ino in fds:
                    self._bins.read_dirs(self._read_fanotify)
                self._expire_pending()
                # a runc call whose arguments were gone before we could read them
                # (the recorder fell behind, or was stopped) asked for a resync
                self._serve_shared(fds)
                self._settle()
                while self._resync and not self._closed.is_set():
                    # asked for by messages _settle read: done now, not at the
                    # next wake-up, which a quiet host may not bring for long
                    # (and the resync's own settling may ask for another)
                    self._serve_shared(set())
                    self._settle()
        except Exception as err:  # never die silently; close() still releases the fds
            self._loop_failed(err)

    def _ask_resync(self) -> None:
        self._resync = True

    def _expire_pending(self) -> None:
        if self._correlator.pending_exec:
            self._correlator.expire_pending()

    def _read_fanotify(self) -> None:
        seen = self._correlator.runc_exec_seen
        for rec in self._bins.rx.fanotify_records():
            if rec.fd >= 0:
                os.close(rec.fd)  # a group without REPORT_FID: never leak the fd
            if rec.mask & _sys.FAN_Q_OVERFLOW:
                self.stats.lost += 1
                self._resync = True
                log.warning("runctrace: fanotify queue overflowed; runc execs were lost")
                continue
            if rec.mask & _sys.FAN_OPEN_EXEC:
                try:
                    seen(rec.pid)
                except Exception as err:  # one runc exec must never end the loop (its fd is closed above)
                    self._message_failed(f"the fanotify event of PID {rec.pid}", err)

    def _read_connector(self, hold: bool = False) -> None:
        """Handle every queued connector message. ``hold``: first wait for the
        messages that follow the one that woke the loop (coalescing: module doc, 2.)."""
        overflowed = False
        if hold:
            time.sleep(_COALESCE_NS / 1e9)
        on_message = self._correlator.on_message
        while True:
            try:
                batch = self._cn_rx.recv_batch()
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                # the kernel dropped messages for us: the lost ones may hold
                # every EXEC, so read fanotify anyway once the queue is empty
                self.stats.lost += 1
                self._resync = True
                overflowed = True
                self._correlator.connector_overflowed()
                log.warning("runctrace: process-events connector overflowed; exits may be lost")
                continue
            if batch is None:
                break
            # (each datagram is a view of the Reader's buffer: nothing below
            # reads the socket)
            fanotify_read = False  # the fanotify queue is read at the batch's first EXEC
            for data in batch:
                for ev in _sys.decode_proc_events(data):
                    try:
                        fanotify_read = on_message(ev, fanotify_read)
                    except Exception as err:  # one message must never end the loop
                        self._message_failed(f"{ev!r}", err)
            if len(batch) < self._cn_rx.batch:
                break  # all that was queued: epoll reports what comes next
        if overflowed:
            self._read_fanotify()

    def _settle(self) -> None:
        """Watched inits that looked gone: read the queued messages (their EXITs
        may be there), then end the rest (:meth:`Correlator.settle_unsure`)."""
        while self._correlator.unsure:
            self._read_connector()  # may resolve some, and add more
            self._correlator.settle_unsure()
