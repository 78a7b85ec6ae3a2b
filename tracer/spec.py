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
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

MAX_CONFIG_BYTES = 16 << 20  # OCI specs are a few KiB; 16 MiB is generous
MAX_SMALL_FILE_BYTES = 64 << 10  # pid files
MAX_STATE_BYTES = 16 << 20


def _read_capped(path: str, cap: int, *, dir_fd: Optional[int] = None) -> tuple[Optional[bytes], Optional[str]]:
    name = os.path.basename(path) if dir_fd is not None else path
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return None, f"{path} is a symlink (not followed)"
        if err.errno == errno.ENOENT:
            return None, f"{path} does not exist"
        return None, f"cannot open {path}: {err.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{path} is not a regular file"
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


# \uD800-\uDFFF: a UTF-16 surrogate escape, paired or not (re-checked by encoding)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse_json_object(data: bytes, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"{path} is not valid UTF-8 (byte {err.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        return None, f"{path} is nested too deeply to parse"
    if not isinstance(value, dict):
        return None, f"{path} holds a JSON {type(value).__name__}, not an object"
    try:  # "\ud800" escapes decode to lone surrogates, which no UTF-8 column can hold
        if _SURROGATE_ESCAPE.search(data):  # (a full re-encode costs as much as the parse)
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, f"{path} contains an unpaired UTF-16 surrogate escape"
    except RecursionError:
        return None, f"{path} is nested too deeply to parse"
    return value, None


def read_config(bundle: Optional[str]) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The parsed OCI spec of ``bundle``, or ``(None, why not)``."""
    if not bundle:
        return None, "bundle unknown"
    try:
        # O_PATH|O_DIRECTORY pins the directory so config.json is opened inside *this*
        # bundle even if the path is swapped while we read.
        dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return None, f"bundle {bundle} does not exist"
        if err.errno == errno.ENOTDIR:
            return None, f"bundle {bundle} is not a directory"
        return None, f"cannot open bundle {bundle}: {err.strerror}"
    try:
        path = os.path.join(bundle, "config.json")
        data, err = _read_capped(path, MAX_CONFIG_BYTES, dir_fd=dfd)
    finally:
        os.close(dfd)
    if err:
        return None, err
    return _parse_json_object(data, path)


def read_pid_file(path: str) -> tuple[Optional[int], Optional[str]]:
    data, err = _read_capped(path, MAX_SMALL_FILE_BYTES)
    if err:
        return None, err
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit() or not 0 < int(text) < 1 << 22:
        return None, f"pid file {path} holds {text[:40]!r}, not a process ID"
    return int(text), None


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
            state[key] = int(value) if value.isdigit() else value
    if not isinstance(state.get("init_process_pid"), int) or state["init_process_pid"] <= 0:
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
    if m is None or int(m.group(2)) <= 0:
        return read_state_fd(fd, path)
    return _head_fields(m), None


def parse_state(data: bytes, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    state = _state_projection(data)
    if state is None:
        state, err = _parse_json_object(data, path)
        if err:
            return None, err
    pid = state.get("init_process_pid")
    if not isinstance(pid, int) or pid <= 0:
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


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that tell a process's life."""

    state: str  # field 3: R, S, D, Z (zombie), X (dead), ...
    ppid: int  # field 4
    flags: int  # field 9: PF_* flags
    start: int  # field 22: start time in clock ticks since boot


def read_proc(path: str) -> bytes:
    """The whole of a small file such as ``/proc/PID/stat``; raises OSError.

    For files whose reader fills a read as far as the file goes (stat, comm,
    cmdline, cgroup: seq_file's and cmdline's readers stop short only at the
    end): a short read is taken for the end. Not for multi-record files such as
    maps or mountinfo, which return about a page per read.

    Plain os.open/os.read, not open(): Python's io stack (a FileIO, a BufferedReader
    and its 8 KiB buffer) touched ~30 pages of memory per call where these touch
    2-4 (counted as bench/bench_pages.py counts). The recorder reads several such
    files per container, and on a VM that charges for each page touched after a
    pause, pages are what a read costs (BENCHMARKS.md).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, _PROC_READ)
        if len(chunk) < _PROC_READ:
            return chunk  # short: the end (see above); one read(2), not a second to see it
        chunks = [chunk]
        while chunk := os.read(fd, _PROC_READ):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_PROC_READ = 16384


def read_stat(pid: int) -> Optional[ProcStat]:
    try:
        raw = read_proc(f"/proc/{pid}/stat")
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[6]), int(fields[19]))


def process_start_ticks(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie.

    runc stores the same number as ``init_process_start``: comparing the two tells
    the container's init from an unrelated process that reused its PID.
    """
    st = read_stat(pid)
    return None if st is None or st.state in ("Z", "X", "x") else st.start


def spec_fields(config: Optional[dict[str, Any]], bundle: Optional[str]) -> dict[str, Any]:
    """The common spec fields that get typed columns. Tolerates any JSON shape."""
    config = config if isinstance(config, dict) else {}
    process = config.get("process") if isinstance(config.get("process"), dict) else {}
    root = config.get("root") if isinstance(config.get("root"), dict) else {}
    args = process.get("args")
    root_path = root.get("path") if isinstance(root.get("path"), str) else None
    if root_path and bundle and not os.path.isabs(root_path):
        root_path = os.path.normpath(os.path.join(bundle, root_path))
    annotations = config.get("annotations")
    return {
        "hostname": config.get("hostname") if isinstance(config.get("hostname"), str) else None,
        "process_args": [str(a) for a in args] if isinstance(args, list) else None,
        "cwd": process.get("cwd") if isinstance(process.get("cwd"), str) else None,
        "root_path": root_path,
        "annotations": (
            [(str(k), str(v)) for k, v in annotations.items()] if isinstance(annotations, dict) else None
        ),
    }


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
    return calendar.timegm(fields) * 1_000_000_000 + nanos
