"""Every read of /proc that runctrace makes: a process's stat, uid, working
directory, command name, namespaces and cgroup, and whether it still lives.

Plain ``os.open``/``os.read`` with one read where one will do (see
:func:`read_proc`); each reader returns None for a process that is gone rather
than raising, because processes end at any moment under a recorder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional


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
    pause, pages are what a read costs (docs/benchmarks-history.md).
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


def process_uid(pid: int) -> Optional[int]:
    """The real uid of ``pid`` (for runc: its caller's), None if it is gone.

    From /proc/PID/status, not the owner of /proc/PID: that one is root for a
    process that is not dumpable, which an unprivileged caller can arrange.
    """
    try:
        raw = read_proc(f"/proc/{pid}/status")
    except OSError:
        return None
    at = raw.find(b"\nUid:")
    fields = raw[at + 5 : raw.find(b"\n", at + 5)].split() if at >= 0 else []
    return int(fields[0]) if fields and fields[0].isdigit() else None


def process_start_ticks(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie.

    runc stores the same number as ``init_process_start``: comparing the two tells
    the container's init from an unrelated process that reused its PID.
    """
    st = read_stat(pid)
    return None if st is None or st.state in ("Z", "X", "x") else st.start


# /proc/PID/stat's flags: PF_EXITING is set at the very start of do_exit(), before
# any exit tracepoint or connector message, and stays set until the process is gone.
PF_EXITING = 0x4


# How soon after runc's exec its cwd is surely still the caller's (see runc_cwd):
# a quarter of the time runc takes to reach its chdir on a small VM (2.2 ms), so
# that a faster machine is covered too.
CWD_TRUSTED_NS = 500_000


def runc_cwd(pid: int, exec_ns: int) -> tuple[Optional[str], bool]:
    """runc's working directory (None if it is gone), and whether it may be the
    bundle already, for :meth:`Tracker.runc_started`.

    runc resolves a relative --bundle or --pid-file against the cwd it inherited,
    then chdirs into --bundle, milliseconds after its exec (Go's runtime starts
    first: 2.2 ms or more on a small VM). A read later than CWD_TRUSTED_NS after the exec
    (``exec_ns``, CLOCK_MONOTONIC) may come after that chdir; :func:`parse_call`
    allows for it.
    """
    try:
        cwd: Optional[str] = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = None  # gone already: fine unless its paths were relative
    return cwd, time.monotonic_ns() - exec_ns > CWD_TRUSTED_NS


def mono_to_wall_ns(mono_ns: int) -> int:
    """A CLOCK_MONOTONIC time (ktime_get_ns, bpf_ktime_get_ns) as wall-clock ns."""
    return time.time_ns() - (time.monotonic_ns() - mono_ns)


def process_alive(pid: int, expected_start: Optional[int] = None) -> bool:
    """Is ``pid`` a live process (not exiting, not a zombie), started at ``expected_start``?

    ``expected_start`` is in clock ticks since boot, as ``init_process_start`` in
    runc's state.json and field 22 of /proc/PID/stat. A process with PF_EXITING set
    counts as gone: its exit has begun, and may already have been reported to (or
    missed by) whatever watches exits.
    """
    return stat_alive(read_stat(pid), expected_start)


def stat_alive(st: Optional[ProcStat], expected_start: Optional[int] = None) -> bool:
    """:func:`process_alive` for a /proc/PID/stat already read (None: the process is gone)."""
    if st is None or st.state in ("Z", "X", "x") or st.flags & PF_EXITING:
        return False
    return expected_start is None or st.start == expected_start


def process_ended(pid: int, start: Optional[int]) -> bool:
    """Has the process ``pid`` (started at ``start``) finished exiting: a zombie, or gone?

    This is when runc, too, considers its container stopped (``runc delete``
    refuses a container whose init is still exiting).
    """
    st = read_stat(pid)
    return st is None or st.state in ("Z", "X", "x") or (start is not None and st.start != start)


def comm(pid: int) -> Optional[str]:
    """The command name of ``pid`` (who ran runc, when given runc's parent)."""
    try:
        return read_proc(f"/proc/{pid}/comm").strip().decode("utf-8", "replace")
    except OSError:
        return None


def namespaces(pid: int) -> dict[str, Optional[int]]:
    """Inode numbers of the mount, PID and network namespaces of ``pid`` (None if gone)."""
    out: dict[str, Optional[int]] = {}
    for ns in ("mnt", "pid", "net"):
        try:
            out[f"{ns}ns"] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except OSError:
            out[f"{ns}ns"] = None
    return out


def cgroup_of(pid: int) -> Optional[str]:
    """The cgroup of ``pid``: the unified (v2) path, else the memory controller's (v1)."""
    try:
        lines = read_proc(f"/proc/{pid}/cgroup").decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    paths: dict[str, str] = {}
    for line in lines:
        hier, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hier == "0" and controllers == "":
            paths["unified"] = path
        for controller in controllers.split(","):
            paths.setdefault(controller, path)
    # In hybrid mode (v1 controllers + cgroup2) runc places the process in both;
    # the unified path is "/" when nothing was set up there.
    for key in ("unified", "memory", "pids", "name=systemd"):
        if paths.get(key) and paths[key] != "/":
            return paths[key]
    return paths.get("unified") or next(iter(paths.values()), None)
