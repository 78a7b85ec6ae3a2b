"""What the BPF program sends through its ring buffer, mirrored and decoded.

``bpf/runctrace.h`` is the one source of the record layouts and of every
``RT_*`` number: its ``#define``s are read into :data:`C` at import time, and its
two structs are mirrored here with ctypes (:class:`RtEvent`, :class:`RtExecEvent`),
in this one place. The program refuses to compile if the mirror's size disagrees
(``RT_PY_EXEC_EVENT_SIZE``, see :mod:`.program`); the ``struct`` formats that
decode records are checked against the mirror below, at import.

:func:`decode_record` is a pure function over bytes: testable without a kernel.
"""

from __future__ import annotations

import ctypes as ct
import os
import re
import struct
from importlib import resources
from typing import NamedTuple, Optional

HEADER = "runctrace.h"


def bpf_source(name: str) -> str:
    """A file of the ``runctrace.bpf`` package (the BPF C sources), as text."""
    return resources.files("runctrace.bpf").joinpath(name).read_text(encoding="utf-8")


def header_constants(text: str) -> dict[str, int]:
    """Every ``#define RT_NAME number`` of runctrace.h: one source for both languages."""
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^#define\s+(RT_\w+)\s+(\d+|0x[0-9a-fA-F]+)\b", text, re.M)}


C = header_constants(bpf_source(HEADER))


class RtEvent(ct.Structure):
    """struct rt_event (runctrace.h): the header of every ring buffer record."""

    _fields_ = [
        ("type", ct.c_uint32),
        ("pid", ct.c_uint32),
        ("ktime_ns", ct.c_uint64),
        ("status", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("init_pid", ct.c_uint32),
        ("mntns", ct.c_uint32),
        ("pidns", ct.c_uint32),
        ("netns", ct.c_uint32),
    ]


class RtExecEvent(ct.Structure):
    """struct rt_exec_event (runctrace.h). Its size is checked at compile time."""

    _fields_ = [
        ("hdr", RtEvent),
        ("argc", ct.c_uint32),
        ("args_size", ct.c_uint32),
        ("runc_id", ct.c_uint32),
        ("filename", ct.c_char * C["RT_PATH_MAX"]),
        ("args", ct.c_char * C["RT_ARGS_SIZE"]),
    ]


class KernelRecord(NamedTuple):
    """One ring buffer record, decoded. (A NamedTuple: a few of these per container.)"""

    type: int  # RT_EV_*
    pid: int
    ktime_ns: int  # CLOCK_MONOTONIC
    status: Optional[int]  # wait(2) status of an exit, None if unknown
    flags: int
    filename: str = ""  # runc's exec only: the path the caller passed, for display
    # runc's exec and the init execs: the argv the kernel held at the exec, whole
    # arguments only (all of them unless flags has RT_F_ARGS_TRUNCATED)
    argv: tuple[str, ...] = ()
    runc_id: int = 0  # runc's exec only: which watched binary (RuncFiles) the kernel matched
    init_pid: Optional[int] = None  # runc exit and init exec: its container's init, if the kernel saw it
    namespaces: Optional[dict[str, int]] = None  # init exec: {"mntns", "pidns", "netns"}, as read in the kernel


# The same layouts as RtEvent and RtExecEvent's fixed part, for struct: unpacking
# a record this way costs a fraction of ctypes' from_buffer_copy (which also needs
# a copy padded to the full 8.5 KiB for an exec record).
_HDR = struct.Struct("=IIQIIIIII")  # type, pid, ktime_ns, status, flags, init_pid, mntns, pidns, netns
_EXEC_FIXED = struct.Struct(f"={_HDR.size}xIII{C['RT_PATH_MAX']}s")  # argc, args_size, runc_id, filename
_STATUS_KNOWN, _ARGS_TRUNCATED = C["RT_F_STATUS_KNOWN"], C["RT_F_ARGS_TRUNCATED"]
# the records that are a struct rt_exec_event
_WITH_ARGV = frozenset((C["RT_EV_EXEC"], C["RT_EV_INIT_EXEC"], C["RT_EV_ORPHAN_INIT_EXEC"]))
# The ctypes mirrors are checked against the C structs when the program compiles;
# these against the mirrors, here.
assert _HDR.size == ct.sizeof(RtEvent) and _EXEC_FIXED.size == RtExecEvent.args.offset


def decode_record(raw: bytes) -> KernelRecord:
    """Decode a ring buffer record: a pure function over bytes, testable without a kernel."""
    if len(raw) < _HDR.size:
        raise ValueError(f"ring buffer record of {len(raw)} bytes, shorter than its header")
    kind, pid, ktime_ns, status, flags, init_pid, mntns, pidns, netns = _HDR.unpack_from(raw)
    ns = {"mntns": mntns, "pidns": pidns, "netns": netns} if mntns and pidns and netns else None
    if kind not in _WITH_ARGV:
        return KernelRecord(kind, pid, ktime_ns, status if flags & _STATUS_KNOWN else None, flags,
                            init_pid=init_pid or None, namespaces=ns)
    fixed = _EXEC_FIXED.size
    if len(raw) < fixed:
        raise ValueError(f"exec record of {len(raw)} bytes, shorter than its {fixed} fixed bytes")
    argc, args_size, runc_id, filename = _EXEC_FIXED.unpack_from(raw)
    argv = tuple(os.fsdecode(a) for a in raw[fixed : fixed + args_size].split(b"\0")[:argc])
    # the kernel's copy is NUL-terminated; bytes after the NUL may be stale
    return KernelRecord(kind, pid, ktime_ns, None, flags, os.fsdecode(filename.split(b"\0", 1)[0]), argv,
                        runc_id=runc_id, init_pid=init_pid or None, namespaces=ns)


def program_argv(rec: KernelRecord) -> Optional[list[str]]:
    """The argv a container's init exec'd its program with, for the tracker to
    compare with the spec's ``process.args``; None (not compared) if the kernel
    could not copy it whole.

    Not completed from /proc, as runc's own argv is (the notifier's
    ``_complete_argv``): by the time this record is read, the program may have
    exec'd another. Nor is the kept part compared alone: it could show a
    difference but never a match, the tracker would have to tell a part from a
    whole argv, and only an argv of more than RT_MAX_ARGS arguments, one of
    RT_ARG_MAX bytes or more, or over about 7 KiB in all comes cut short.
    """
    return None if rec.flags & _ARGS_TRUNCATED else list(rec.argv)


__all__ = ["C", "HEADER", "KernelRecord", "RtEvent", "RtExecEvent", "bpf_source", "decode_record", "program_argv"]
