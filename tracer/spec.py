"""Read what runc leaves on disk: a bundle's config.json, a pid file, ``state.json``.

Every reader returns ``(value, error)`` instead of raising, because a bad file must
still give an event (with an empty field and a clear ``error``) and must never stop
the recorder. Files are opened with ``O_NOFOLLOW`` (a symlinked config.json could point
the recorder, which runs as root, at any file on the host) and ``O_NONBLOCK`` (a FIFO
in place of config.json would otherwise block the event loop forever), then checked
to be regular files and read up to a size cap.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from dataclasses import dataclass
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
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                return None, f"{path} grew over the {cap}-byte limit while being read"
        return b"".join(chunks), None
    except OSError as err:
        return None, f"cannot read {path}: {err.strerror}"
    finally:
        os.close(fd)


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


def read_state(state_dir: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """runc's ``<root>/<id>/state.json`` (mode 0600, written by rename, removed on delete)."""
    path = os.path.join(state_dir, "state.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        return None, f"{path} does not exist" if err.errno == errno.ENOENT else f"cannot open {path}: {err.strerror}"
    try:
        return read_state_fd(fd, path)
    finally:
        os.close(fd)


# runc writes these fields first, before the (possibly huge) copy of the spec
_STATE_HEAD_FIELDS = {
    "id": re.compile(rb'"id":\s*"([^"\\]{1,1024})"'),
    "init_process_pid": re.compile(rb'"init_process_pid":\s*(\d{1,10})'),
    "init_process_start": re.compile(rb'"init_process_start":\s*(\d{1,20})'),
    "created": re.compile(rb'"created":\s*"([0-9T:.Z+-]{1,64})"'),
}
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


def parse_state(data: bytes, path: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    state, err = _parse_json_object(data, path)
    if err:
        return None, err
    pid = state.get("init_process_pid")
    if not isinstance(pid, int) or pid <= 0:
        return None, f"{path} has no valid init_process_pid"
    return state, None


def state_bundle(state: dict[str, Any]) -> Optional[str]:
    """The bundle runc recorded in its state as the label ``bundle=<path>``."""
    for label in (state.get("config") or {}).get("labels") or []:
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


def read_stat(pid: int) -> Optional[ProcStat]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
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


def rfc3339_to_ns(text: Any) -> Optional[int]:
    """``2026-11-28T10:02:13.913754346Z`` (Go's RFC3339Nano, as in state.json) -> ns since epoch."""
    if not isinstance(text, str) or not text.endswith("Z") or "T" not in text:
        return None
    import calendar

    head, _, frac = text[:-1].partition(".")
    try:
        parsed = time.strptime(head, "%Y-%m-%dT%H:%M:%S")
        nanos = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        return None
    return calendar.timegm(parsed) * 1_000_000_000 + nanos
