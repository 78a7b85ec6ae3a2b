"""The watched runc binaries, by inode: the ``runc_files`` and ``runc_inos`` maps,
and keeping them right as a package upgrade replaces a binary.

The kernel tells runc's execs from every other by the executed file's identity
(its superblock's device and its inode number), never by a path: runc run
through a hard link, a symlink of any name or ``/proc/self/fd/N`` is the same
inode. Paths serve only to find the inodes (:func:`~runctrace.runc.binaries.find_runc`).
A binary renamed over (dpkg) or created in place is a new inode, so the
directories of the binaries are watched with inotify (:class:`BinaryDirs`)
and the maps follow (:meth:`RuncFiles.follow`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from runctrace import _sys
from runctrace.backends.base import log
from runctrace.backends.bcc.records import C
from runctrace.errors import NotSupported
from runctrace.runc.binaries import RuncBinary, find_runc

# As the fanotify backend's (its _IN_BIN_DIR_MASK): a file renamed or created there
_IN_BIN_DIR_MASK = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.CLOSE_WRITE | _sys.In.ONLYDIR


def kernel_dev(major: int, minor: int) -> int:
    """A device number in the kernel's own encoding (MKDEV: 12 bits of major,
    20 of minor), as ``super_block.s_dev`` holds it. stat(2)'s st_dev is another
    encoding (the kernel's new_encode_dev, minor bits split around the major):
    take it apart with os.major and os.minor first."""
    return (major << 20) | minor


def _mount_device(fd: int) -> Optional[tuple[int, int]]:
    """(major, minor) of the superblock of the mount ``fd`` is on, or None.

    /proc/self/mountinfo prints each mount's superblock s_dev, which is what the
    kernel compares; stat's st_dev is what the filesystem chooses to report,
    which on btrfs is the subvolume's own device and on a multi-layer overlayfs
    the layer's, never the superblock's. The mount is the one of this fd
    (fdinfo's mnt_id), so no path is looked up twice.
    """
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            mnt_id = next(line.split()[1] for line in f if line.startswith(b"mnt_id:"))
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(maxsplit=3)
                if fields[0] == mnt_id:
                    major, minor = fields[2].split(b":")
                    return int(major), int(minor)
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return None


class FileId(NamedTuple):
    """An open file as the kernel's structs name it, and as stat(2) does."""

    dev: int  # the superblock's device, kernel encoding (kernel_dev)
    ino: int  # inode.i_ino, which stat reports as st_ino
    stat: tuple[int, int]  # (st_dev, st_ino)
    # stat's device is not the superblock's (btrfs, overlayfs): such a filesystem
    # numbers inodes per subvolume or layer, so (dev, ino) may name other files too
    shared: bool


def file_id(fd: int) -> FileId:
    st = os.fstat(fd)
    found = _mount_device(fd)
    major, minor = found if found is not None else (os.major(st.st_dev), os.minor(st.st_dev))
    dev = kernel_dev(major, minor)
    shared = dev != kernel_dev(os.major(st.st_dev), os.minor(st.st_dev))
    return FileId(dev, st.st_ino, (st.st_dev, st.st_ino), shared)


@dataclass
class _RuncFile:
    """One entry of the runc_files map: the watched binaries with its (device, inode)."""

    id: int
    # (st_dev, st_ino) -> the binary's main path (events' "runtime"): one binary,
    # except on a filesystem where stat tells apart files that share the kernel's
    # identity (FileId.shared)
    paths: dict[tuple[int, int], str]
    fds: list[int]  # O_PATH: each keeps its inode, and so its number, from going to another file


class RuncFiles:
    """The ``runc_files`` and ``runc_inos`` maps (the watched runc binaries, by inode)
    and what user space keeps for each entry.

    Each entry holds its binary open (O_PATH). A deleted or replaced file's inode
    number is free for the next file created on that filesystem; while the map
    names it, the open file keeps it from being reused, so no other program can
    come to carry a watched runc's identity. An entry leaves the maps before its
    file is closed.

    An entry whose filesystem may give the same (device, inode) to several files
    (``FileId.shared``) is marked RT_F_UNVERIFIED: user space then compares the
    running process's /proc/PID/exe with the binaries by stat(2), which tells them
    apart.
    """

    def __init__(self, table: Any, inos: Any) -> None:
        self._table = table
        self._inos = inos  # runc_inos: the inode numbers alone, which the kernel tests first
        self._files: dict[tuple[int, int], _RuncFile] = {}  # in the maps: (kernel dev, ino) -> entry
        # every entry ever made, by id: an exec that matched a replaced binary's
        # entry may be read after the entry left the maps (a few per upgrade)
        self._by_id: dict[int, _RuncFile] = {}
        self._next_id = 1

    def follow(self, binaries: list[RuncBinary]) -> bool:
        """Make the maps hold exactly these binaries' inodes (as opened now).
        True if that changed them."""
        keep: set[tuple[int, int]] = set()
        changed = False
        for b in binaries:
            try:
                fd = os.open(b.path, os.O_PATH | os.O_CLOEXEC)
            except OSError as err:  # replaced or removed since it was found: the next event says
                log.warning("runctrace: cannot open %s: %s", b.path, err.strerror)
                continue
            try:
                fid = file_id(fd)
                key, stat_key = (fid.dev, fid.ino), fid.stat
                entry = self._files.get(key)
                if entry is None:
                    _warn_if_script(fd, b.path)
                    entry = _RuncFile(self._next_id, {stat_key: b.path}, [fd])
                    self._insert(key, entry.id, C["RT_F_UNVERIFIED"] if fid.shared else 0)
                    self._next_id += 1
                    self._files[key] = self._by_id[entry.id] = entry
                    changed = True
                elif stat_key not in entry.paths:  # another file with the same kernel identity
                    entry.paths[stat_key] = b.path
                    entry.fds.append(fd)
                else:
                    os.close(fd)  # watched already
            except BaseException:
                os.close(fd)
                raise
            keep.add(key)
        for key in [k for k in self._files if k not in keep]:
            entry = self._files.pop(key)
            self._delete(key)
            self._close(entry)  # after the delete: see the class doc
            changed = True
        return changed

    def _insert(self, key: tuple[int, int], runc_id: int, flags: int) -> None:
        k, v = self._table.Key(), self._table.Leaf()
        k.dev, k.ino = key
        v.id, v.flags = runc_id, flags
        self._table[k] = v
        self._inos[self._inos.Key(key[1])] = self._inos.Leaf(1)

    def _delete(self, key: tuple[int, int]) -> None:
        k = self._table.Key()
        k.dev, k.ino = key
        _delete_key(self._table, k)
        # unless a file still watched (on another device) has the same number
        if not any(ino == key[1] for _dev, ino in self._files):
            _delete_key(self._inos, self._inos.Key(key[1]))

    @staticmethod
    def _close(entry: _RuncFile) -> None:
        for fd in entry.fds:
            os.close(fd)
        entry.fds.clear()

    def path(self, runc_id: int) -> Optional[str]:
        """The main path of the binary the kernel matched as ``runc_id``."""
        entry = self._by_id.get(runc_id)
        return next(iter(entry.paths.values())) if entry else None

    def path_run_by(self, runc_id: int, pid: int) -> Optional[str]:
        """The main path of the binary of entry ``runc_id`` that ``pid`` runs, by
        stat(2), or None if it runs none of them. Raises OSError if ``pid`` is gone."""
        st = os.stat(f"/proc/{pid}/exe")
        entry = self._by_id.get(runc_id)
        return entry.paths.get((st.st_dev, st.st_ino)) if entry else None

    @property
    def paths(self) -> list[str]:
        """The main paths of the binaries watched now."""
        return [p for entry in self._files.values() for p in entry.paths.values()]

    def close(self) -> None:
        for entry in self._files.values():
            self._close(entry)
        self._files.clear()


def _delete_key(table: Any, key: Any) -> None:
    try:
        del table[key]
    except KeyError:
        pass


def _warn_if_script(fd: int, path: str) -> None:
    """A "#!" script runs its interpreter, whose inode is the one the kernel sees."""
    try:
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            script = f.read(2) == b"#!"
    except OSError:
        return
    if script:
        log.warning("runctrace: %s is a script: the bcc backend sees the runc binary it runs, "
                    "which must be watched too (--runc-path)", path)


class BinaryDirs:
    """inotify on the directories of the runc binaries: a package upgrade renames
    a new file over the old one (MOVED_TO), an installer may create it in place
    (CREATE). The kernel matches inodes, so the maps must follow (:class:`RuncFiles`).

    Between the rename and :meth:`read`, an exec of the new file is not seen, as
    with the fanotify backend's mark.
    """

    def __init__(self, runc_files: RuncFiles, binaries: list[RuncBinary], runc_paths: tuple[str, ...]) -> None:
        self.runc_files = runc_files
        self.binaries = binaries
        self._runc_paths = runc_paths
        self._fd = _sys.inotify_init1(_sys.IN_NONBLOCK | _sys.IN_CLOEXEC)
        try:
            self._rx = _sys.Reader(self._fd, 16 * 1024)
            self._dirs: dict[int, tuple[str, set[str]]] = {}  # wd -> (directory, runc file names)
            names: dict[str, set[str]] = {}
            for binary in binaries:
                for alias in binary.aliases:
                    real = os.path.realpath(alias)
                    names.setdefault(os.path.dirname(real), set()).add(os.path.basename(real))
            for directory, files in names.items():
                self._dirs[_sys.inotify_add_watch(self._fd, directory, _IN_BIN_DIR_MASK)] = (directory, files)
        except BaseException:
            os.close(self._fd)
            raise

    def fileno(self) -> int:
        return self._fd

    def read(self) -> None:
        """Read what changed in the directories; follow a replaced runc binary."""
        changed = False
        for rec in self._rx.inotify_records():
            # an overflowed queue may have lost the one that mattered
            if rec.mask & _sys.IN_Q_OVERFLOW or rec.name in self._dirs.get(rec.wd, ("", ()))[1]:
                changed = True
        if changed:
            self._refresh()

    def _refresh(self) -> None:
        """A runc file was replaced: watch the inode its paths now lead to, and no
        longer the old one (no path leads there; a process that runs it already is
        followed by its PID)."""
        try:
            binaries = find_runc(self._runc_paths)
        except NotSupported:
            return  # mid-replacement, or removed: the old entries stay (their inodes are held)
        self.binaries = binaries
        if self.runc_files.follow(binaries):
            log.info("runctrace: a runc binary was replaced; watching the inodes of %s",
                     ", ".join(self.runc_files.paths))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


__all__ = ["BinaryDirs", "FileId", "RuncFiles", "file_id", "kernel_dev"]
