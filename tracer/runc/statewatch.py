"""Knowing, as soon as runc writes it, that a container's state.json is there.

See :class:`StateDirWatcher`: inotify and fanotify together, because each misses
what the other sees.
"""

from __future__ import annotations

import errno
import os
from typing import Optional

from runctrace import _sys
from runctrace.backends.base import log
from runctrace.runc.files import read_state_fd
from runctrace.safetext import printable


# inotify masks. runc writes state.json to a temporary name and renames it
# (MOVED_TO); CLOSE_WRITE covers a runc that writes it in place. On the root and
# its parent, CREATE/MOVED_TO say that a container's directory (or the root) appeared.
_IN_STATE_DIR = _sys.In.MOVED_TO | _sys.In.CLOSE_WRITE | _sys.In.ONLYDIR


_IN_PARENT = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.ONLYDIR


class StateDirWatcher:
    """Says when ``<root>/<id>/state.json`` may be readable, and hands it over if it can.

    Two kernel mechanisms, because each misses what the other sees:

    * **inotify** on the nearest existing level of ``<root>/<id>`` (usually the root;
      a level above it for a ``--root`` that runc has yet to create). Every watch is
      followed by a look, because the file may have appeared just before it. runc
      writes ``state-NNN``, closes it and renames it to state.json: if the close came
      before our fanotify mark, only inotify's ``IN_MOVED_TO`` tells.
    * **fanotify** ``FAN_CLOSE_WRITE`` on ``<root>/<id>/`` itself: its event carries an
      *open fd* of the closed file. A short-lived ``runc run`` deletes the directory
      a few ms after writing the state; by then a path is useless, but the fd still
      reads the file. (A notification-class group: runc never waits for us.)
    """

    def __init__(self) -> None:
        # NONBLOCK: the event loop reads what is queued, never waits. CLOEXEC: runc or anything
        # else we may spawn must not inherit it.
        self.fd = _sys.inotify_init1(_sys.IN_NONBLOCK | _sys.IN_CLOEXEC)
        try:
            self.fan_fd = _sys.fanotify_init(
                _sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC | _sys.FanInit.NONBLOCK,
                # NONBLOCK: should a FIFO in a state dir ever be reported, opening it
                # for the event must not wait for a writer
                os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE | os.O_NOATIME | os.O_NONBLOCK,
            )
        except OSError:
            self.fan_fd = -1  # no fanotify: inotify alone still works, with a narrower window
        self._ino_rx = _sys.Reader(self.fd, 16 * 1024)
        self._fan_rx = _sys.Reader(self.fan_fd, 16 * 1024) if self.fan_fd >= 0 else None
        self._wd_path: dict[int, str] = {}
        self._path_wd: dict[str, int] = {}
        self._marked: set[str] = set()
        self.expected: set[str] = set()
        self.overflows = 0

    def fds(self) -> list[int]:
        # fanotify's first: when both report the same state file in one wakeup, the
        # open fd resolves it and inotify's event finds nothing left to read
        return [fd for fd in (self.fan_fd, self.fd) if fd >= 0]

    def expect(self, state_dir: str) -> bool:
        """Start waiting for ``state_dir/state.json``; True if it may exist already."""
        self.expected.add(state_dir)
        return self._arm(state_dir)

    def forget(self, state_dir: str) -> None:
        self.expected.discard(state_dir)
        self._unwatch(state_dir)
        self._unmark(state_dir)
        # the root's watch stays: other containers live in the same root

    def read(self, fd: int) -> list[tuple[str, Optional[dict]]]:
        """Expected state directories worth a look now, with the state if it came open."""
        return self._read_fanotify() if fd == self.fan_fd else [(d, None) for d in self._read_inotify()]

    def _read_inotify(self) -> list[str]:
        ready: list[str] = []
        for rec in self._ino_rx.inotify_records():
            if rec.mask & _sys.IN_Q_OVERFLOW:
                self.overflows += 1  # events were lost: look at everything
                ready.extend(self.expected)
                continue
            if rec.mask & _sys.IN_IGNORED:  # the directory is gone (runc delete)
                path = self._wd_path.pop(rec.wd, None)
                if path is not None:
                    self._path_wd.pop(path, None)
                continue
            base = self._wd_path.get(rec.wd)
            if base is None:
                continue
            if base in self.expected:
                if rec.name == "state.json":
                    ready.append(base)
                continue
            if rec.mask & _sys.IN_CREATE_OR_MOVED_TO:
                # a container's state dir, a runc root, or a level above it appeared
                path = os.path.join(base, rec.name)
                for state_dir in [d for d in self.expected if d == path or d.startswith(path + "/")]:
                    if self._arm(state_dir):
                        ready.append(state_dir)
        return ready

    def _read_fanotify(self) -> list[tuple[str, Optional[dict]]]:
        ready: list[tuple[str, Optional[dict]]] = []
        for rec in self._fan_rx.fanotify_records():
            if rec.mask & _sys.FAN_Q_OVERFLOW:
                self.overflows += 1
                ready.extend((d, None) for d in self.expected)
                continue
            if rec.fd < 0:
                continue
            try:
                path = os.readlink(f"/proc/self/fd/{rec.fd}").removesuffix(" (deleted)")
                state_dir, name = os.path.split(path)
                if name.startswith("state") and state_dir in self.expected:
                    state, _err = read_state_fd(rec.fd, path)
                    if state is not None:
                        ready.append((state_dir, state))
            finally:
                os.close(rec.fd)  # every event carries an open fd: never leak it
        return ready

    def close(self) -> None:
        for fd in self.fds():
            os.close(fd)
        self.fd = self.fan_fd = -1
        self._wd_path.clear()
        self._path_wd.clear()
        self._marked.clear()

    def _arm(self, state_dir: str) -> bool:
        """Watch the way down to ``state_dir``; True if ``state_dir`` itself is watched.

        runc creates a new ``--root`` with MkdirAll, possibly several levels at once:
        watch the nearest level that exists; each level that appears re-arms.
        """
        ancestors = []  # the root, its parent, ... up to "/"
        path = os.path.dirname(state_dir)
        while True:
            ancestors.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for depth, path in enumerate(ancestors):
            if self._watch(path, _IN_PARENT):
                break
        else:
            return False
        # Levels below the one watched may have appeared meanwhile: look at each.
        for path in reversed(ancestors[:depth]):
            if not self._watch(path, _IN_PARENT):
                return False
        return self._watch(state_dir, _IN_STATE_DIR) and self._mark(state_dir)

    def _watch(self, path: str, mask: int) -> bool:
        if path in self._path_wd:
            return True
        try:
            wd = _sys.inotify_add_watch(self.fd, path, mask)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("runctrace: cannot watch %s: %s", printable(path), err.strerror)
            return False
        self._wd_path[wd] = path
        self._path_wd[path] = wd
        return True

    def _unwatch(self, path: str) -> None:
        wd = self._path_wd.pop(path, None)
        if wd is not None:
            self._wd_path.pop(wd, None)
            _sys.inotify_rm_watch(self.fd, wd)

    _MARK = _sys.FanEvent.CLOSE_WRITE | _sys.FanEvent.EVENT_ON_CHILD

    def _mark(self, state_dir: str) -> bool:
        if self.fan_fd < 0 or state_dir in self._marked:
            return True
        try:
            _sys.fanotify_mark(
                self.fan_fd, _sys.FanMark.ADD | _sys.FanMark.DONT_FOLLOW | _sys.FanMark.ONLYDIR, self._MARK, state_dir
            )
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("runctrace: cannot watch %s: %s", printable(state_dir), err.strerror)
            return False
        self._marked.add(state_dir)
        return True

    def _unmark(self, state_dir: str) -> None:
        if state_dir in self._marked:
            self._marked.discard(state_dir)
            try:
                _sys.fanotify_mark(
                    self.fan_fd, _sys.FanMark.REMOVE | _sys.FanMark.DONT_FOLLOW | _sys.FanMark.ONLYDIR,
                    self._MARK, state_dir,
                )
            except OSError:
                pass  # the directory is gone; the kernel dropped its mark with it
