"""Where the recorder may write, and how it opens and creates files there.

The recorder runs as root, and other local users can make files, links and
directories where it writes. Everything here exists so that none of them can
make it write where they choose, replace what it wrote, or feed it a file of
theirs to read back:

* :func:`open_trusted_dir` opens an output directory component by component
  with O_NOFOLLOW, and refuses it (unless told ``allow_untrusted``) if
  :func:`judge` finds that another user owns or can write it or a directory
  above it, after OpenSSH's StrictModes;
* :func:`create_file` makes a file only under a name that was free
  (O_EXCL|O_NOFOLLOW, mode 0600), and :func:`temp_name` makes names no one can
  guess, so no one can have put a FIFO or a link there first;
* :func:`open_regular` opens what is read back only if it is a regular file of
  bounded size, checked again on the opened fd.

Every path here is opened relative to a directory fd: what was judged is what is
written, not a path someone could swap meanwhile.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import Optional

from runctrace.errors import RecordingError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # as the kernel's path walk: more is a loop
# Files the recorder creates: only if the name is free (O_EXCL: never into a file
# someone else made, a FIFO or a device), never through a symlink (O_NOFOLLOW),
# readable by the recorder's user only.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# What a temporary name ends with: a file being written, renamed into place once complete.
TEMP_SUFFIX = ".tmp"
_TRUST_HINT = (
    "the recorder writes only where no other user can replace what it writes: root or the recorder's "
    "user must own the directory and each one above it, and none may be writable by group or others, "
    "except one with the sticky bit (like /tmp) whose next directory down is owned by root or the "
    "recorder's user and not writable by group or others (others then cannot rename or replace it); "
    "fix that, or pass --allow-untrusted-dir"
)


def why(err: OSError) -> str:
    """``err`` as the end of a one-line message: "cannot write X: <this>"."""
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if err.errno == errno.ELOOP:
        return "a symlink is in the way (not followed)"
    return err.strerror or str(err)


def trusted_uids() -> tuple[int, int]:
    return 0, os.geteuid()


def who(uid: int) -> str:
    return "root" if uid == 0 else f"uid {uid}"


def kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, for a message ("a FIFO")."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


# ------------------------------------------------------------ judging directories

def _resolve(path: str) -> tuple[str, Optional[str]]:
    """``path`` (a directory) with every symlink on it resolved, as the kernel would;
    and, if one of those symlinks is owned by a user other than root or the
    recorder's, why it cannot be trusted (that user can point it elsewhere).

    Resolved here, one component at a time, rather than by ``os.path.realpath``,
    to see each symlink on the way, those inside a symlink's target included. A
    component that does not exist ends the walk: the rest is kept as written.
    """
    trusted = trusted_uids()
    todo = os.path.join(os.getcwd(), path).split("/")[::-1]  # a stack: next component last
    done, links, problem = "/", 0, None
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            done = os.path.dirname(done)  # of the resolved path, as the kernel does
            continue
        here = os.path.join(done, name)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            return os.path.normpath(os.path.join(here, *todo[::-1])), problem
        if not stat.S_ISLNK(st.st_mode):
            done = here
            continue
        if st.st_uid not in trusted and problem is None:
            problem = f"the symlink {here} is owned by {who(st.st_uid)}"
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        target = os.readlink(here)
        if target.startswith("/"):
            done = "/"
        todo.extend(target.split("/")[::-1])
    return done, problem


def judge(chain: list[tuple[str, os.stat_result]], complete: bool = True) -> Optional[str]:
    """Why the last directory of ``chain`` (each directory from / down, with its
    stat) is no safe place to write, or None. Not ``complete``: the chain stops
    above that directory, which the recorder is about to create.

    Like OpenSSH's StrictModes: a user other than root or the recorder's who owns
    one of them, or can write one, can rename it away and put a directory of their
    own in its place, or (the last one) replace the files in it: make the recorder
    write where they choose, or read a journal they forged. One exception, or /tmp
    could hold nothing: a directory others can write *with the sticky bit* is safe
    above a next directory that root or the recorder's user owns and that group
    and others cannot write, because the sticky bit lets no one else rename or
    remove that entry. The last directory gets no such exception: its own entries
    are what the recorder writes.
    """
    trusted = trusted_uids()
    for i, (path, st) in enumerate(chain):
        if st.st_uid not in trusted:
            return f"{path} is owned by {who(st.st_uid)}"
        if not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            continue
        mode = f"mode {stat.S_IMODE(st.st_mode):04o}"
        if complete and i == len(chain) - 1:
            return f"{path} is writable by group or others ({mode})"
        if not st.st_mode & stat.S_ISVTX:
            return f"{path} is writable by group or others and has no sticky bit ({mode})"
        if i + 1 < len(chain):  # else: the next one down is the recorder's, made 0700
            below, below_st = chain[i + 1]
            if below_st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return (f"{below} is writable by group or others "
                        f"(mode {stat.S_IMODE(below_st.st_mode):04o}) inside {path}, which others can write")
    return None


def refuse_untrusted(output: str, problem: Optional[str], allow_untrusted: bool) -> None:
    """RecordingError naming ``output`` if ``problem`` (from :func:`judge`) is not allowed."""
    if problem and not allow_untrusted:
        raise RecordingError(f"refusing to record to {output}: {problem}; {_TRUST_HINT}")


def open_trusted_dir(path: str, output: str, *, create: bool, follow: bool,
                     allow_untrusted: bool) -> tuple[int, list[tuple[str, os.stat_result]]]:
    """An fd of the directory ``path``, created 0700 if ``create`` and missing; and
    each directory from / down to it, with its stat.

    Refused (RecordingError naming ``output``) if :func:`judge` finds it unsafe,
    or a symlink on the way is (:func:`_resolve`), unless ``allow_untrusted``.
    The path is resolved first, then every component opened from the one above
    with O_NOFOLLOW, and the stat taken from the fd: what is judged is what was
    opened, not a path someone could swap meanwhile. The parents are judged before
    ``path`` is created, so a refusal leaves nothing behind. Unless ``follow``,
    ``path`` itself is not followed if it is a symlink.
    """
    path = path.rstrip("/") or "/"
    head, tail = os.path.split(path)
    if follow or tail in (".", ".."):  # resolved whole: no last name of its own
        head, tail = path, ""
    parent, bad_link = _resolve(head or ".")
    refuse_untrusted(output, bad_link, allow_untrusted)
    names = [n for n in parent.split("/") if n] + ([tail] if tail else [])
    fd = os.open("/", DIR_FLAGS)
    chain = [("/", os.fstat(fd))]
    try:
        for i, name in enumerate(names):
            try:
                below = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not (create and i == len(names) - 1):
                    raise
                refuse_untrusted(output, judge(chain, complete=False), allow_untrusted)
                below = make_dir(name, fd)
            os.close(fd)
            fd = below
            chain.append((os.path.join(chain[-1][0], name), os.fstat(fd)))
        refuse_untrusted(output, judge(chain), allow_untrusted)
    except BaseException:
        os.close(fd)
        raise
    return fd, chain


# ------------------------------------------------------------ opening and creating

def open_dir(name: str, dir_fd: Optional[int] = None, create: bool = True) -> int:
    """Open (creating 0700 if missing) a directory without following a symlink."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    return make_dir(name, dir_fd)


def make_dir(name: str, dir_fd: int) -> int:
    """Make ``name`` 0700 in ``dir_fd`` (unless another writer made it first) and
    open it. The mode is set on the open directory, not left to the umask: a
    umask such as 0277 would leave the recorder a directory it cannot write into
    (root gets in anyway; any other user does not)."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        made = True
    except FileExistsError:
        made = False  # another writer made it first; judged like any other
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    if made:
        os.fchmod(fd, 0o700)
    return fd


def temp_name(name: str) -> str:
    """A temporary name for ``name`` while it is written: a leading dot, so pyarrow,
    DuckDB and Spark skip it; unpredictable, so no one can have put a FIFO or a
    link under it first."""
    return f".{name}.{secrets.token_hex(8)}{TEMP_SUFFIX}"


def create_file(name: str, dir_fd: int) -> int:
    """A new file ``name`` (mode 0600) open for writing; FileExistsError if the name is taken."""
    return os.open(name, CREATE_FLAGS, 0o600, dir_fd=dir_fd)


def open_regular(name: str, dir_fd: int, max_size: int, flags: int = os.O_RDONLY) -> int:
    """An fd to read the file ``name``, checked to be a regular file of at most
    ``max_size`` bytes; OSError otherwise.

    ``lstat`` first: a device is never opened (opening some acts, e.g. arms a
    watchdog). O_NONBLOCK: a FIFO put there since would otherwise block the open
    forever, waiting for a writer; O_NOFOLLOW: never a symlink's target. The
    checks are then made again on the opened fd: that, not the name, is what is read.
    """
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, f"{kind(mode)}, not a regular file", name)
    fd = os.open(name, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{kind(st.st_mode)}, not a regular file", name)
        if st.st_size > max_size:
            raise OSError(errno.EFBIG, f"larger than {max_size} bytes", name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def still_named(fd: int, name: str, dir_fd: int) -> bool:
    """Is the file open as ``fd`` still the one called ``name``?"""
    try:
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def rename_unless_taken(src: str, dst: str, dir_fd: int) -> None:
    """Rename ``src`` to ``dst``, FileExistsError if ``dst`` exists (rename(2) would replace it)."""
    if exists(dst, dir_fd):
        raise FileExistsError(errno.EEXIST, "taken", dst)
    os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def set_aside(name: str, suffix: str, dir_fd: int) -> str:
    """Rename ``name`` to ``name + suffix`` (``.1``, ``.2``... after it if taken); never deletes."""
    for n in range(1000):
        new = name + suffix + (f".{n}" if n else "")
        try:
            rename_unless_taken(name, new, dir_fd)
            return new
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name to set it aside", name + suffix)
