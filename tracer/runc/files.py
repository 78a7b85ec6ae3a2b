"""Read what runc leaves on disk: a bundle's config.json, a pid file, ``state.json``.

Every reader returns ``(value, error)`` instead of raising, because a bad file must
still give an event (with an empty field and a clear ``error``) and must never stop
the recorder. Files are opened with ``O_NOFOLLOW`` (a symlinked config.json could point
the recorder, which runs as root, at any file on the host) and ``O_NONBLOCK`` (a FIFO
in place of config.json would otherwise block the event loop forever), then checked
to be regular files and read up to a size cap.
"""

from __future__ import annotations

import calendar
import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from runctrace.safetext import printable

MAX_CONFIG_BYTES = 16 << 20  # OCI specs are a few KiB; 16 MiB is generous
MAX_SMALL_FILE_BYTES = 64 << 10  # pid files
MAX_STATE_BYTES = 16 << 20


class _NotRegular(Exception):
    """What the path names instead of a regular file (the message says)."""


def _open_regular(name: str, dir_fd: Optional[int], stat_out: Optional[list]) -> int:
    """Open ``name`` for reading only if it is a regular file, judged before it is
    opened for reading: the path comes from a container's creator, and opening a
    device (``/dev/watchdog`` arms it) or a FIFO has effects of its own. An O_PATH
    fd pins the file without opening it; it is reopened through /proc only once
    fstat says regular."""
    pinned = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(pinned)
        if stat_out is not None:
            stat_out.append(st)
        if stat.S_ISLNK(st.st_mode):
            raise _NotRegular("is a symlink (not followed)")
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegular("is not a regular file")
        return os.open(f"/proc/self/fd/{pinned}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(pinned)


def _read_capped(
    path: str, cap: int, *, dir_fd: Optional[int] = None, stat_out: Optional[list] = None
) -> tuple[Optional[bytes], Optional[str]]:
    """The bytes of the regular file ``path`` (at most ``cap``), or ``(None, why not)``.
    ``stat_out``: a list that gets the file's ``os.stat_result`` once it is open."""
    name = os.path.basename(path) if dir_fd is not None else path
    try:
        fd = _open_regular(name, dir_fd, stat_out)
    except _NotRegular as why:
        return None, f"{path} {why}"
    except OSError as err:
        if err.errno == errno.ENOENT:
            return None, f"{path} does not exist"
        return None, f"cannot open {path}: {err.strerror}"
    try:
        st = os.fstat(fd)
        if st.st_size > cap:
            return None, f"{path} is {st.st_size} bytes, over the {cap}-byte limit"
        chunks, total = [], 0
        while True:  # the size may change under us: enforce the cap while reading too
            # a byte more than fstat said first: if just the size comes back, that
            # is the end, and the file takes one read(2), not a second to see it
            limit = st.st_size + 1 if total <= st.st_size else cap + 1  # (st_size <= cap: checked above)
            ask = min(1 << 20, limit - total)
            chunk = os.read(fd, ask)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                return None, f"{path} grew over the {cap}-byte limit while being read"
            if total == st.st_size and len(chunk) < ask:
                break
        return b"".join(chunks), None
    except OSError as err:
        return None, f"cannot read {path}: {err.strerror}"
    finally:
        os.close(fd)


# Bounds on what a JSON document from outside may hold. runc (Go's encoding/json)
# accepts numbers of any length and nesting up to 10,000 deep; Python's int() refuses
# more than 4,300 digits with a ValueError. Nesting is bounded by the C parser's own
# recursion limit (about 1,000 levels, a RecursionError, caught): a prescan for a
# tighter bound cost more than the parse on real specs. OCI specs and runc's state
# hold small numbers and nest about six deep.
MAX_NUMBER_CHARS = 64  # characters of one number, sign and exponent included


class JsonRefused(ValueError):
    """A JSON document holds something runctrace does not parse (too long a number,
    NaN, too deep); the message says what."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused(f"a number of {len(text)} characters (limit {MAX_NUMBER_CHARS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused(f"a number of {len(text)} characters (limit {MAX_NUMBER_CHARS})")
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999: finite in the text, not in a double
        raise JsonRefused(f"the number {text}, out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name}, which is not a JSON number")  # Python's parser takes NaN and Infinity


def parse_json_bytes(data: bytes, what: str) -> tuple[Any, Optional[str]]:
    """Any bytes in, ``(value, None)`` or ``(None, why not)`` out; never raises.

    Valid UTF-8 only (Go's decoder replaces bad bytes silently; a record must say
    so instead), no NaN or Infinity, numbers within the bound above, nesting the
    parser can follow, and no lone UTF-16 surrogate escape (no UTF-8 column can
    hold one).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"{what} is not valid UTF-8 (byte {err.start})"
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
        )
    except JsonRefused as err:
        return None, f"{what} holds {err}"
    except json.JSONDecodeError as err:
        return None, f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        return None, f"{what} is nested too deeply to parse"
    except ValueError as err:  # not expected past the checks above; still an answer
        return None, f"{what} cannot be parsed: {err}"
    if _SURROGATE_ESCAPE.search(data):  # (a full re-encode costs as much as the parse)
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, f"{what} contains an unpaired UTF-16 surrogate escape"
    return value, None


# \uD800-\uDFFF: a UTF-16 surrogate escape, paired or not (re-checked by encoding)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse_json_object(data: bytes, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    value, err = parse_json_bytes(data, path)
    if err:
        return None, err
    if not isinstance(value, dict):
        return None, f"{path} holds a JSON {type(value).__name__}, not an object"
    return value, None


@dataclass
class SpecFile:
    """A bundle's config.json as read once, and what says where it came from.

    The recorder reads it as soon as runc's arguments name the bundle: a hook
    that swaps the file later (after runc read it) must not change what is
    recorded. ``identity`` lets a later look tell whether the file was replaced
    or rewritten since (:meth:`changed`).
    """

    config: Optional[dict[str, Any]]
    error: Optional[str]
    sha256: Optional[str] = None  # of the bytes read, even when they were not recorded
    uid: Optional[int] = None  # the file's owner
    nlink: Optional[int] = None  # its hard links
    identity: Optional[tuple] = None  # (dev, ino, size, mtime_ns, ctime_ns) as read
    refused: Optional[str] = None  # why the content was not kept: "hardlinked" or "foreign-owner"

    def changed(self, bundle: Optional[str]) -> bool:
        """Is ``bundle``'s config.json now another file, or rewritten, since this read?"""
        if self.identity is None or not bundle:
            return False
        try:
            st = os.stat(os.path.join(bundle, "config.json"), follow_symlinks=False)
        except OSError:
            return False  # removed (a bundle deleted after the run): not a swap
        return _identity(st) != self.identity


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_config(bundle: Optional[str], caller_uid: Optional[int] = None) -> SpecFile:
    """Read ``bundle``'s config.json once; never raises.

    The spec is recorded only from a file with one link whose owner is root or
    ``caller_uid`` (runc's caller): a hard link can make a bundle's config.json
    any file on its filesystem, and the recorder, as root, can read what the
    container's creator cannot. Such a file still gets its hash, owner and link
    count, and an ``error`` saying why its content is not kept.
    """
    if not bundle:
        return SpecFile(None, "bundle unknown")
    try:
        # O_PATH|O_DIRECTORY pins the directory so config.json is opened inside *this*
        # bundle even if the path is swapped while we read.
        dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        shown = printable(bundle)
        if err.errno == errno.ENOENT:
            return SpecFile(None, f"bundle {shown} does not exist")
        if err.errno == errno.ENOTDIR:
            return SpecFile(None, f"bundle {shown} is not a directory")
        return SpecFile(None, f"cannot open bundle {shown}: {err.strerror}")
    seen: list[os.stat_result] = []
    try:
        path = os.path.join(bundle, "config.json")
        data, err = _read_capped(path, MAX_CONFIG_BYTES, dir_fd=dfd, stat_out=seen)
    finally:
        os.close(dfd)
    st = seen[0] if seen else None
    spec = SpecFile(None, printable(err) if err else None)
    if st is not None:
        spec.uid, spec.nlink, spec.identity = st.st_uid, st.st_nlink, _identity(st)
    if data is None:
        return spec
    spec.sha256 = hashlib.sha256(data).hexdigest()
    if st.st_nlink > 1:
        spec.refused = "hardlinked"
        spec.error = f"config.json has {st.st_nlink} hard links: its content is not recorded (it may be another file)"
        return spec
    if st.st_uid not in (0, caller_uid):
        spec.refused = "foreign-owner"
        spec.error = f"config.json is owned by uid {st.st_uid}, not root or runc's caller: its content is not recorded"
        return spec
    spec.config, err = _parse_json_object(data, "config.json")
    spec.error = printable(err) if err else None
    return spec


def read_config(bundle: Optional[str]) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The parsed OCI spec of ``bundle``, or ``(None, why not)`` (see :func:`load_config`)."""
    spec = load_config(bundle)
    return spec.config, spec.error


def read_pid_file(path: str) -> tuple[Optional[int], Optional[str]]:
    data, err = _read_capped(path, MAX_SMALL_FILE_BYTES)
    if err:
        return None, err
    text = data.strip()
    # runc writes the PID in decimal, no sign; PID_MAX_LIMIT is 2^22. (A long
    # string of digits is refused by its length, before int() can raise on it.)
    if not _PID_TEXT.fullmatch(text) or not 0 < int(text) <= 1 << 22:
        # (its content is not quoted: a directory symlink on the way can make the
        # path any file the recorder, as root, can read)
        return None, f"pid file {printable(path)} holds {len(text)} bytes that are not a process ID"
    return int(text), None


_PID_TEXT = re.compile(rb"[0-9]{1,7}")


def read_state(state_dir: str, head_only: bool = False) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """runc's ``<root>/<id>/state.json`` (mode 0600, written by rename, removed on delete).

    ``head_only``: only the fields runc writes first (``id``, ``init_process_pid``,
    ``init_process_start``, ``created``), from one small read, and no ``config``:
    for a caller that already knows the bundle. Reading the whole file, which
    embeds the spec, cost several times more (an event-loop hot spot under churn).
    A file that does not start the way runc writes it is read whole instead.
    """
    path = os.path.join(state_dir, "state.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        return None, f"{path} does not exist" if err.errno == errno.ENOENT else f"cannot open {path}: {err.strerror}"
    try:
        return _state_head_fd(fd, path) if head_only else read_state_fd(fd, path)
    finally:
        os.close(fd)


# runc (libcontainer's State, through Go's encoding/json) writes these fields first,
# in this order and with no spaces, before its (possibly huge) copy of the spec.
_STATE_HEAD = re.compile(
    rb'\{"id":"([^"\\]{1,1024})","init_process_pid":(\d{1,10}),"init_process_start":(\d{1,20}),'
    rb'"created":"([0-9T:.Z+-]{1,64})"'
)
# the same fields one by one, wherever they are: for a huge state's head
_STATE_HEAD_FIELDS = {
    "id": re.compile(rb'"id":\s*"([^"\\]{1,1024})"'),
    "init_process_pid": re.compile(rb'"init_process_pid":\s*(\d{1,10})'),
    "init_process_start": re.compile(rb'"init_process_start":\s*(\d{1,20})'),
    "created": re.compile(rb'"created":\s*"([0-9T:.Z+-]{1,64})"'),
}
# runc's config labels: one "key=value" per spec annotation, then "bundle=<path>"
# last (libcontainer/specconv). A JSON string cannot hold an unescaped quote, so
# this sequence cannot come from inside any value.
_LABELS = re.compile(rb'"labels":\[((?:"(?:[^"\\]|\\.)*")(?:,"(?:[^"\\]|\\.)*")*)?\]')
_STATE_HEAD_BYTES = 64 << 10


def read_state_fd(fd: int, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """A state file through an fd (fanotify may hand us one whose file is gone).

    state.json embeds the container's whole spec, so a huge spec makes a huge state.
    Over the size cap, only its head is read, for the fields runc writes first.
    """
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{path} is not a regular file"
        if st.st_size > MAX_STATE_BYTES:
            return _state_from_head(os.pread(fd, _STATE_HEAD_BYTES, 0), path)
        data = os.pread(fd, MAX_STATE_BYTES + 1, 0)
    except OSError as err:
        return None, f"cannot read {path}: {err.strerror}"
    return parse_state(data, path)


def _state_from_head(head: bytes, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    state: dict[str, Any] = {}
    for key, pattern in _STATE_HEAD_FIELDS.items():
        m = pattern.search(head)
        if m:
            value = m.group(1).decode("ascii", "replace")
            state[key] = int(value) if value.isdigit() and key != "id" else value
    if not _is_pid(state.get("init_process_pid")):
        return None, f"{path} is over the {MAX_STATE_BYTES}-byte limit and its head has no init_process_pid"
    return state, None


def _state_projection(data: bytes) -> Optional[dict[str, Any]]:
    """The fields runctrace reads from a state.json as runc writes it, without parsing
    the rest: the same shape as the full JSON, cut down to ``id``, ``init_process_pid``,
    ``init_process_start``, ``created`` and the config's ``labels``. None if the file
    does not start the way runc writes it (then the caller parses it all).

    Parsing a whole state.json (a few KiB of spec for every container) was the
    largest single cost of the event loop under churn; this is over ten times cheaper.
    """
    m = _STATE_HEAD.match(data)
    if m is None:
        return None
    state = _head_fields(m)
    labels = _LABELS.search(data, m.end())
    if labels is not None:
        try:  # Go escapes <, > and & as \u003c...: decode the strings properly
            values = json.loads(b"[" + (labels.group(1) or b"") + b"]")
            for value in values:
                value.encode("utf-8")  # a lone surrogate escape: let the full parse say so
        except ValueError:  # (UnicodeEncodeError is one)
            return None
        state["config"] = {"labels": values}
    return state


# PID_MAX_LIMIT: no PID is larger. A forged state.json naming a larger one would
# otherwise reach the int32 pid column.
PID_MAX = 1 << 22


def _is_pid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= PID_MAX


def _head_fields(m: "re.Match[bytes]") -> dict[str, Any]:
    return {
        "id": m.group(1).decode("utf-8", "replace"),
        "init_process_pid": int(m.group(2)),
        "init_process_start": int(m.group(3)),
        "created": m.group(4).decode("ascii"),
    }


# enough for _STATE_HEAD with the longest ID it accepts
_STATE_HEAD_READ = 2048


def _state_head_fd(fd: int, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    try:
        m = _STATE_HEAD.match(os.pread(fd, _STATE_HEAD_READ, 0))
    except OSError as err:  # a FIFO or a directory in its place
        return None, f"cannot read {path}: {err.strerror}"
    if m is None or not _is_pid(int(m.group(2))):
        return read_state_fd(fd, path)
    return _head_fields(m), None


def parse_state(data: bytes, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    state = _state_projection(data)
    if state is None:
        state, err = _parse_json_object(data, path)
        if err:
            return None, err
    pid = state.get("init_process_pid")
    if not _is_pid(pid):
        return None, f"{path} has no valid init_process_pid"
    return state, None


def state_bundle(state: dict[str, Any]) -> Optional[str]:
    """The bundle runc recorded in its state as the label ``bundle=<path>``.

    runc appends it after one ``key=value`` label per spec annotation, so the last
    such label is runc's: an annotation keyed ``bundle`` cannot stand in for it.
    """
    labels = (state.get("config") or {}).get("labels") or []
    for label in reversed(labels if isinstance(labels, list) else []):
        if isinstance(label, str) and label.startswith("bundle="):
            return label[len("bundle="):]
    return None


_RFC3339_UTC = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z\Z")


def rfc3339_to_ns(text: Any) -> Optional[int]:
    """``2026-11-28T10:02:13.913754346Z`` (Go's RFC3339Nano, as in state.json) -> ns since epoch."""
    m = _RFC3339_UTC.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    try:
        fields = [int(g) for g in m.groups()[:6]]
        datetime(*fields)  # only to reject month 13, February 30, ...
    except ValueError:
        return None
    nanos = int((m.group(7) or "").ljust(9, "0"))
    value = calendar.timegm(fields) * 1_000_000_000 + nanos
    return value if 0 <= value < 1 << 63 else None  # the int64 time_ns column
