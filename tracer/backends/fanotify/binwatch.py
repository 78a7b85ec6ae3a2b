"""The watch on the runc binaries: which file is runc, and when it is replaced.

A fanotify group with an inode mark on each runc binary reports every exec of
runc (module doc, 1.); an inotify watch on the directories that hold them sees a
package upgrade put a new file in place, so that the new inode is marked too.
The event loop reads the group's records (:attr:`BinaryWatch.rx`) and the
directories' (:meth:`BinaryWatch.read_dirs`); this module owns the fds, the marks
and the answer to "which watched binary does this process run?"
(:meth:`BinaryWatch.runc_exe`).
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Optional

from runctrace import _sys
from runctrace.backends.base import log
from runctrace.errors import NotSupported
from runctrace.runc.binaries import RuncBinary, find_runc

# inotify on the directories holding runc binaries: a package upgrade renames a new
# file over the old one (MOVED_TO), an installer may create it in place (CREATE).
_IN_BIN_DIR_MASK = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.CLOSE_WRITE | _sys.In.ONLYDIR
# fanotify_mark's answers for a file on a filesystem that cannot report file
# handles: none (EOPNOTSUPP), a zero fsid (ENODEV), or an fsid that differs
# from its mount's (EXDEV: a btrfs subvolume, an overlayfs layer)
_NO_FID = (errno.EOPNOTSUPP, errno.ENODEV, errno.EXDEV)


def open_exec_group(paths: list[str], fid: bool = True) -> tuple[int, bool]:
    """The fanotify group that reports execs of the runc binaries.

    CLASS_NOTIF: the exec never waits for us (see module doc). NONBLOCK: reads
    in the loop return EAGAIN instead of hanging. CLOEXEC: runc or anything we
    spawn must not inherit the group. (No FAN_UNLIMITED_QUEUE: a stopped
    recorder must not pin unbounded kernel memory; an overflow is reported as
    FAN_Q_OVERFLOW and counted.)

    REPORT_FID where the binaries' filesystems allow it: events then name the
    file by handle instead of carrying an open fd of it, and the only fields
    read are the PID and the mask. With fds, the kernel opens runc for us at
    each of the three runc execs of a container, and we close it again: two
    syscalls and a file open per exec, for a name /proc/PID/exe also gives.
    A filesystem that cannot encode file handles (or a kernel before 5.1)
    refuses the mark or the flag: then the group reports fds.
    Returns the group's fd, and whether it reports file handles.
    """
    base = _sys.FanInit.CLASS_NOTIF | _sys.FanInit.CLOEXEC | _sys.FanInit.NONBLOCK
    for flags in ((base | _sys.FanInit.REPORT_FID, base) if fid else (base,)):
        try:
            # the event fds (without REPORT_FID): read-only, and not inherited
            fd = _sys.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE)
        except OSError as err:
            if flags != base and err.errno == errno.EINVAL:
                continue  # no REPORT_FID in this kernel
            raise
        try:
            for path in paths:
                _mark_binary(fd, path)
        except OSError as err:
            os.close(fd)
            if flags != base and err.errno in _NO_FID:
                continue
            raise
        return fd, flags != base
    raise AssertionError("unreachable")


def _mark_binary(group: int, path: str) -> None:
    # An inode mark (no FAN_MARK_MOUNT): only this file's execs reach us.
    _sys.fanotify_mark(group, _sys.FanMark.ADD, _sys.FanEvent.OPEN_EXEC, path)


class BinaryWatch:
    """The runc binaries' fanotify group, and the inotify watch on their directories.

    ``fan`` and ``rx`` (the group's fd and its reader) change when a replaced
    binary forces a group without file handles (:meth:`_reopen_without_fid`):
    read them anew each time. :meth:`close` closes every fd this opened; a
    failed ``__init__`` closes what it had opened before raising.
    """

    def __init__(self, runc_paths: tuple[str, ...] = ()) -> None:
        self._runc_paths = runc_paths
        self.binaries: list[RuncBinary] = find_runc(runc_paths)
        self._by_inode = {(b.dev, b.ino): b.path for b in self.binaries}
        self._fds: list[int] = []
        try:
            self.fan, self.fan_fid = open_exec_group([b.path for b in self.binaries])
            self._fds.append(self.fan)
            self.rx = _sys.Reader(self.fan)
            self.ino = _sys.inotify_init1(_sys.IN_NONBLOCK | _sys.IN_CLOEXEC)
            self._fds.append(self.ino)
            self._ino_rx = _sys.Reader(self.ino, 16 * 1024)
            # directory -> runc file names in it, watched for a replaced binary
            self._dirs: dict[str, set[str]] = {}
            self._wds: dict[int, str] = {}
            for binary in self.binaries:
                for alias in binary.aliases:
                    real = os.path.realpath(alias)
                    self._dirs.setdefault(os.path.dirname(real), set()).add(os.path.basename(real))
            for directory in self._dirs:
                self._wds[_sys.inotify_add_watch(self.ino, directory, _IN_BIN_DIR_MASK)] = directory
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    def runc_exe(self, pid: int) -> Optional[str]:
        """The watched runc binary ``pid`` runs now (the fanotify event's file), or
        None if it runs something else, or is gone."""
        try:
            st = os.stat(f"/proc/{pid}/exe")
            path = self._by_inode.get((st.st_dev, st.st_ino))
            if path is not None:
                return path
            # runc's sealed memfd copy of itself (`runc init`)
            return "runc" if os.readlink(f"/proc/{pid}/exe").startswith("/memfd:") else None
        except OSError:
            return None

    def sole_runtime(self) -> str:
        """The runtime to name for a runc gone before its binary could be looked
        at: the one watched binary if there is one, else plain "runc"."""
        paths = set(self._by_inode.values())
        return paths.pop() if len(paths) == 1 else "runc"

    def read_dirs(self, drain: Callable[[], None]) -> None:
        """The directories' inotify fd is readable. ``drain``: reads what the
        fanotify group holds, called before the group is replaced."""
        changed = False
        for rec in self._ino_rx.inotify_records():
            if rec.name in self._dirs.get(self._wds.get(rec.wd, ""), ()):
                changed = True
        if changed:
            self._refresh(drain)

    def _refresh(self, drain: Callable[[], None]) -> None:
        """A runc file was replaced (a package upgrade renames a new file over it):
        the mark stays on the old inode, so mark the new one."""
        try:
            binaries = find_runc(self._runc_paths)
        except NotSupported:
            return  # mid-replacement; the rename that completes it brings us back here
        for binary in binaries:
            key = (binary.dev, binary.ino)
            if key not in self._by_inode:
                try:
                    _mark_binary(self.fan, binary.path)
                except OSError as err:
                    if not (self.fan_fid and err.errno in _NO_FID and self._reopen_without_fid(binaries, drain)):
                        log.warning("runctrace: cannot watch new %s: %s", binary.path, err.strerror)
                        continue
                self._by_inode[key] = binary.path
                log.info("runctrace: %s was replaced; watching the new file", binary.path)
        self.binaries = binaries

    def _reopen_without_fid(self, binaries: list[RuncBinary], drain: Callable[[], None]) -> bool:
        """A new runc file where file handles cannot be reported (another
        filesystem): one group cannot mix both, so a group that reports fds takes
        over, with every binary marked. True if it did."""
        try:
            fd, _fid = open_exec_group([b.path for b in binaries], fid=False)
        except OSError as err:
            log.warning("runctrace: cannot watch the runc binaries anew: %s", err.strerror)
            return False
        drain()  # what the old group holds
        old, self.fan, self.fan_fid = self.fan, fd, False
        self._fds[self._fds.index(old)] = fd
        self.rx = _sys.Reader(fd)
        os.close(old)
        log.info("runctrace: a runc binary's filesystem reports no file handles; watching by fd")
        return True
