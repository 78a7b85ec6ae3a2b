"""The journal of a dataset recorder: its names, writing it, and reading it back.

A dataset recorder appends each flush's rows to a journal, one JSON line each,
fdatasynced, so that a crash loses at most one flush interval; the journal's rows
become a Parquet file every ``file_interval`` (see :mod:`runctrace.store`). A
journal is ``.journal-<pid>-<segment>.jsonl`` in its host directory, flock'd for
as long as its recorder lives: that lock is how the next recorder on the
directory tells a crashed recorder's journal (:mod:`runctrace.store.recovery`
writes it as Parquet) from a live one.

Reading a journal back is total (:func:`read_journal`): whatever its bytes, every
line is a row the recorder could have written, its counters, or counted as
unreadable; nothing in it can make recovery raise, hang, or hold more than
``MAX_LINE`` bytes of one line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import secrets
import stat
import time
from typing import Callable, Optional

import pyarrow as pa

from runctrace.store.schema import SCHEMA, row_from_json
from runctrace.store.trust import kind, rename_unless_taken, unlink_quietly, who

# `.journal-<pid>-<segment>.jsonl`. The leading dot keeps it out of every reader's
# listing (pyarrow, DuckDB and Spark skip hidden files); the pid and segment name
# the Parquet file(s) it becomes, so a recovery that is itself interrupted never
# writes a row twice. Bounded digits: a name is read back into an int, and into a
# file name.
_PREFIX, _SUFFIX = ".journal-", ".jsonl"
JOURNAL_NAME = re.compile(rf"^{re.escape(_PREFIX)}(\d{{1,10}})-(\d{{1,10}}){re.escape(_SUFFIX)}$")
# What a journal is called while it is made, on filesystems where it cannot be made
# nameless (see Journal): a temporary name, ending so.
_NEW_SUFFIX = _SUFFIX + ".new"
# A ".new" name lives for microseconds in a live recorder; one this old was left
# by a crash before its rename.
_STALE_NEW_S = 60.0

# One encoder made once: json.dumps with any option builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
# A journal line starting with this holds the recorder's counters, not a row.
_STATS_MARK = "#"
_STATS_PREFIX = _STATS_MARK.encode()
# The longest journal line recovery reads. A row holds a spec (runc.files.MAX_CONFIG_BYTES,
# 16 MiB, when read; a little more re-serialised) and fields taken from it, and
# JSON escaping at most triples a byte of text: 256 MiB is far above any row the
# recorder writes, and bounds what one forged line can make recovery hold.
MAX_LINE = 256 << 20

_JOURNAL_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
# link(2) cannot work here (no /proc for an O_TMPFILE's link, or a filesystem
# without hard links); other errors (a full disk...) are errors
_CANNOT_LINK = (errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


def journal_name(pid: int, segment: int) -> str:
    return f"{_PREFIX}{pid}-{segment:06d}{_SUFFIX}"


def is_new_name(name: str) -> bool:
    """Is ``name`` a journal's name while it is made (see :func:`unlink_stale`)?"""
    return name.startswith(_PREFIX) and name.endswith(_NEW_SUFFIX)


def unlink_stale(name: str, dir_fd: int) -> None:
    """Remove a ``.new`` name a crash left: one this old, or one already linked in
    under its journal's name (two links: a crash between the link and the unlink
    of the name it came from, which would otherwise make its journal look untrusted)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if time.time() - st.st_mtime > _STALE_NEW_S or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass  # gone meanwhile, or not a file unlink can take: left alone


class _NoFreeName(FileExistsError):
    """Every journal name this recorder may use is taken."""


def _cannot_link(err: BaseException) -> bool:
    return isinstance(err, OSError) and not isinstance(err, _NoFreeName) and err.errno in _CANNOT_LINK


class Journal:
    """The segment of rows not yet in a Parquet file, kept flock'd while its recorder lives.

    The lock is how another recorder starting on the directory tells a live journal
    from a crashed one (flock locks die with their process). So the file must never
    be visible under its name unlocked: it is made nameless (``O_TMPFILE``),
    locked, and only then linked in, which also refuses to replace an existing
    file (a recorder with the same pid in another pid namespace). Filesystems
    without ``O_TMPFILE``, or hosts without /proc, get a dot-name ending ``.new``
    instead, linked in once locked (renamed, where the filesystem has no hard
    links); recovery leaves such a file alone while it is young (``_STALE_NEW_S``).
    The directory is fsynced after, so the name survives a power cut with the rows.
    """

    def __init__(self, dir_fd: int, segment: int) -> None:
        self.dir_fd = dir_fd
        self.size = 0  # what the journal holds of whole appends: the rest is cut off
        self._torn = False  # an append failed and its part could not yet be cut off
        self.fd = self._nameless(segment)
        if self.fd < 0:
            self.fd = self._named(segment)
        try:
            os.fsync(dir_fd)
        except BaseException:
            # unlocked once closed: the name must not outlive this failure, or the
            # next recorder would recover an empty journal, or a live one's
            unlink_quietly(self.name, dir_fd)
            os.close(self.fd)
            raise

    @property
    def segment(self) -> int:
        """The segment its name holds (not the one asked for, if that name was taken)."""
        return int(JOURNAL_NAME.match(self.name)[2])

    def _nameless(self, segment: int) -> int:
        """An O_TMPFILE, locked, then linked in through /proc; -1 if this cannot work here."""
        try:
            fd = os.open(".", _JOURNAL_FLAGS | os.O_TMPFILE, 0o600, dir_fd=self.dir_fd)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            return -1  # no O_TMPFILE on this filesystem
        try:
            os.fchmod(fd, 0o600)  # exactly: recovery trusts no other mode (a umask could take bits away)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._link_free_name(segment, lambda name: os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=self.dir_fd))
            return fd
        except BaseException as err:
            os.close(fd)
            if _cannot_link(err):
                return -1  # no /proc mounted, or no hard links on this filesystem
            raise

    def _named(self, segment: int) -> int:
        """A dot-name ending ``.new``, locked, then linked (or, with no hard links, renamed) in."""
        # unpredictable, so no one can have put a FIFO or a link under it first
        tmp = f"{_PREFIX}{os.getpid()}-{segment:06d}-{secrets.token_hex(8)}{_NEW_SUFFIX}"
        fd = os.open(tmp, _JOURNAL_FLAGS | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=self.dir_fd)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._link_free_name(segment, lambda name: os.link(
                    tmp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False))
            except OSError as err:
                if not _cannot_link(err):
                    raise
                # no hard links here: rename, which would replace a file silently, so
                # look first (a race only with a recorder of our pid in another pid
                # namespace, on a filesystem without links)
                self._link_free_name(segment, lambda name: rename_unless_taken(tmp, name, self.dir_fd))
            unlink_quietly(tmp, self.dir_fd)
            return fd
        except BaseException:
            os.close(fd)
            unlink_quietly(tmp, self.dir_fd)
            raise

    def _link_free_name(self, segment: int, link: Callable[[str], None]) -> None:
        for attempt in range(100):
            self.name = journal_name(os.getpid(), segment + attempt * 1_000_000)
            try:
                link(self.name)
                return
            except FileExistsError:
                continue  # another recorder's, with our pid (another pid namespace)
        raise _NoFreeName(errno.EEXIST, "no free journal name")

    def append(self, rows: list[dict], stats: dict) -> None:
        """The rows and the counters so far, in one write(2), then fdatasync.

        A failure (a full disk mid-write, EIO at the sync) cuts what this append
        wrote, so the retry of these rows leaves them neither twice nor torn.
        """
        if self._torn:
            os.ftruncate(self.fd, self.size)
            self._torn = False
        data = "".join([*(_encode(row) + "\n" for row in rows), _STATS_MARK, _encode(stats), "\n"]).encode()
        try:
            with memoryview(data) as view:
                written = 0
                while written < len(view):
                    written += os.write(self.fd, view[written:])
            os.fdatasync(self.fd)
        except OSError:
            self._torn = True
            try:
                os.ftruncate(self.fd, self.size)
                self._torn = False
            except OSError:
                pass  # cut before the next append, which fails until it can be
            raise
        self.size += len(data)

    def remove(self) -> None:
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
            os.fsync(self.dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)

    def close(self) -> None:
        os.close(self.fd)


# ------------------------------------------------------------------ reading one back

def trusted_journal(st: os.stat_result) -> Optional[str]:
    """Why a journal with this (l)stat is not one this recorder's user wrote, or None.

    The recorder makes its journals as its own user, mode 0600, with one name;
    another user's file, one others could write (or could have), or one with a
    second name (a hard link: someone else's file under this name) could hold
    rows no container made, which recovery would put into a file as root's.
    """
    if not stat.S_ISREG(st.st_mode):
        return kind(st.st_mode)
    if st.st_uid != os.geteuid():
        return f"owned by {who(st.st_uid)}"
    if stat.S_IMODE(st.st_mode) != 0o600:
        return f"mode {stat.S_IMODE(st.st_mode):04o}, not 0600"
    if st.st_nlink != 1:
        return f"{st.st_nlink} links"
    return None


class _Unacceptable(ValueError):
    """A journal value the recorder could not have written."""


def _reject_constant(name: str):
    raise _Unacceptable(f"{name} is no number the recorder writes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unacceptable(f"{text} is out of range")
    return value


def _int64(text: str) -> int:
    # 20 digits and a sign is int64's widest: longer is refused before int() reads it
    if len(text) > 20:
        raise _Unacceptable("an integer longer than 64 bits")
    return int(text)


# Total: every line decodes to a value or raises ValueError (or RecursionError, for
# nesting deeper than the interpreter's stack), whatever its bytes. NaN and
# Infinity are JSON that Python accepts but the recorder never writes.
_decode = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64).decode
_SURROGATE = re.compile("[\ud800-\udfff]")  # \\udXXX escapes: no UTF-8 for Parquet


def _fits(value, type_: pa.DataType) -> bool:
    """Can Parquet hold ``value`` (from JSON) in a column of ``type_``? Types it does
    not know are left to pyarrow (a journal it refuses is set aside whole)."""
    if value is None:
        return True
    if pa.types.is_string(type_):
        return isinstance(value, str) and not _SURROGATE.search(value)
    if pa.types.is_integer(type_) or pa.types.is_timestamp(type_):
        bits = type_.bit_width
        low, high = (0, 1 << bits) if pa.types.is_unsigned_integer(type_) else (-(1 << bits - 1), 1 << bits - 1)
        return type(value) is int and low <= value < high
    if pa.types.is_boolean(type_):
        return type(value) is bool
    if pa.types.is_list(type_):
        return isinstance(value, list) and all(_fits(v, type_.value_type) for v in value)
    if pa.types.is_map(type_):
        return isinstance(value, list) and all(
            isinstance(pair, list) and len(pair) == 2 and pair[0] is not None
            and _fits(pair[0], type_.key_type) and _fits(pair[1], type_.item_type) for pair in value)
    return True


def _is_row(value) -> bool:
    """Is ``value`` a row the recorder could have written (every column the schema's type)?"""
    if not isinstance(value, dict):
        return False
    for field in SCHEMA:
        item = value.get(field.name)
        if (item is None and not field.nullable) or not _fits(item, field.type):
            return False
    return True


def _parse_line(line: bytes) -> tuple[str, Optional[dict]]:
    """("row" | "stats", value) of one journal line, or ("bad", None). Never raises."""
    stats = line.startswith(_STATS_PREFIX)
    try:
        value = _decode((line[len(_STATS_PREFIX):] if stats else line).decode())
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return "bad", None
    if stats:
        return ("stats", value) if isinstance(value, dict) else ("bad", None)
    return ("row", value) if _is_row(value) else ("bad", None)


def read_journal(fd: int) -> tuple[list[dict], dict, int, bool]:
    """A journal's rows, its last counters, how many lines were unreadable, and
    whether its last line was torn.

    A line that is not a row the recorder could have written (not JSON, NaN,
    a number out of its column's range, a string where a list goes, longer than
    ``MAX_LINE``) counts as unreadable, and so does a last line without its
    newline: a write cut short by a crash (power loss; a kill -9 does not split a
    write(2) to a local file). Read line by line: only rows are held, never the
    file whole.
    """
    rows, stats, bad, torn = [], {}, 0, False
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        while line := f.readline(MAX_LINE + 1):
            if not line.endswith(b"\n"):
                bad += 1
                if len(line) <= MAX_LINE:
                    torn = True
                    break  # the last line, cut short
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of a line over the cap, a MiB at a time
                continue
            what, value = _parse_line(line[:-1])
            if what == "row":
                rows.append(row_from_json(value))
            elif what == "stats":
                stats = value
            else:
                bad += 1
    return rows, stats, bad, torn
