"""The eBPF backend (BCC): runc's execs, its children and the containers' exits, seen in the kernel.

How it works, and why each part is needed
-----------------------------------------
1. **Tracepoints, filtered in the kernel** (``runctrace/bpf/runctrace.bpf.c``). At
   ``sched_process_exec`` the program reads which file the new program is (its
   superblock's device and inode number, from ``mm->exe_file``) and looks it up in
   a BPF hash map of the watched runc binaries' inodes, which this module fills
   from :func:`~runctrace.runc.binaries.find_runc` and keeps up to date as a package
   upgrade replaces a binary (:class:`RuncFiles`). Paths serve only to find the
   inodes: runc run through a hard link or symlink of any name, or through
   ``/proc/self/fd/N``, is the same inode, as for the fanotify backend's mark. For
   a match the program copies argv from the new process's memory and sends it at
   once. Every other process on the host costs four reads of kernel memory and
   two hash lookups in the kernel, and nothing in user space. ``runc init``
   re-executes ``/proc/self/exe``, runc's own inode: its argument ``init`` makes
   no container, and the kernel drops it (its next exec, of a memfd copy of
   runc, is another inode). No ``syscalls:`` tracepoint is used: attaching one
   slows every syscall of every process on the host (by 11% for a syscall-bound
   program here); the few task fields read instead are at offsets from the
   kernel's BTF (:mod:`runctrace.backends.btf`).
2. **runc's process tree and exits, in the kernel.** The program follows each runc
   process and its descendants down to the container's init (three levels), and
   reads how each ends (its wait status) from the task as its last thread exits.
   Only the container init starting its program (with its PID and the argv the
   kernel held at that exec, which the tracker compares with the spec's; once its
   runc has ended, as a create's init does at ``runc start``, in a record of its
   own), the end of a runc process (with that PID too, if seen), and the end of a
   PID this module put in the ``containers`` map (a container's init), cross to
   user space. A container's exit is sent once the init is a zombie, from the
   parent's notification (``signal_generate``) or ``sched_process_free``: the exit
   tracepoint fires a moment before, when ``runc delete`` would still call the
   container running, and user space would have to poll for the zombie.
3. **runc's own records, in user space** (:mod:`runctrace.runc.tracker`, shared with the
   fanotify backend): a `runc run` is resolved when the kernel reports its init
   starting its program; a create or restore by its ``--pid-file`` when runc exits,
   or else by ``state.json`` as soon as runc writes it. The bundle's config.json
   gives the spec. No state files are watched for a `runc run`: the kernel already
   says when and which (that saved ~0.3 ms of CPU and several wake-ups per
   container). The fanotify backend learns the same from the connector.

The race between "the container's init ended" and "user space learned its PID and
asked the kernel to watch it" is closed by a handshake on the ``containers`` map
(see ``_watch``) and by ``recent_exits``, which keeps the exit status of runc's
recently ended descendants.

runc's working directory, needed for a relative or missing ``--bundle``, is read
from ``/proc/PID/cwd`` when the exec record arrives, as the fanotify backend does;
see :func:`runctrace.runc.tracker.runc_cwd` for the one case where runc may have moved
by then.

Everything runs on one thread around one epoll (the ring buffer and a wake-up
eventfd): no thread per container.
"""

from __future__ import annotations

import collections
import ctypes as ct
import errno
import functools
import importlib
import os
import platform
import re
import select
import struct
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, Optional

from runctrace import _sys
from runctrace.errors import NotSupported
from runctrace.backends.base import Callback, LoopNotifier, Support, log
from runctrace.backends.btf import kernel_offsets
from runctrace.runc.tracker import Container, RuncExec, Tracker
from runctrace.runc.proc import mono_to_wall_ns, process_ended, read_stat, runc_cwd, stat_alive
from runctrace.runc.binaries import RuncBinary, find_runc
from runctrace.runc.proc import read_proc

# ------------------------------------------------------------ the shared definitions

_HEADER = "runctrace.h"
_PROGRAM = "runctrace.bpf.c"


def _bpf_source(name: str) -> str:
    return resources.files("runctrace.bpf").joinpath(name).read_text(encoding="utf-8")


def _header_constants(text: str) -> dict[str, int]:
    """Every ``#define RT_NAME number`` of runctrace.h: one source for both languages."""
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^#define\s+(RT_\w+)\s+(\d+|0x[0-9a-fA-F]+)\b", text, re.M)}


C = _header_constants(_bpf_source(_HEADER))


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
_STATUS_KNOWN, _ARGS_TRUNCATED, _EV_EXEC = C["RT_F_STATUS_KNOWN"], C["RT_F_ARGS_TRUNCATED"], C["RT_EV_EXEC"]
_EV_INIT_EXEC, _EV_ORPHAN_INIT_EXEC = C["RT_EV_INIT_EXEC"], C["RT_EV_ORPHAN_INIT_EXEC"]
_WITH_ARGV = frozenset((_EV_EXEC, _EV_INIT_EXEC, _EV_ORPHAN_INIT_EXEC))  # struct rt_exec_event records
_EV_RUNC_EXIT, _EV_CONTAINER_EXIT = C["RT_EV_RUNC_EXIT"], C["RT_EV_CONTAINER_EXIT"]
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


def _program_argv(rec: KernelRecord) -> Optional[list[str]]:
    """The argv a container's init exec'd its program with, for the tracker to
    compare with the spec's ``process.args``; None (not compared) if the kernel
    could not copy it whole.

    Not completed from /proc, as runc's own argv is (``_complete_argv``): by the
    time this record is read, the program may have exec'd another. Nor is the
    kept part compared alone: it could show a difference but never a match, the
    tracker would have to tell a part from a whole argv, and only an argv of more
    than RT_MAX_ARGS arguments, one of RT_ARG_MAX bytes or more, or over about
    7 KiB in all comes cut short.
    """
    return None if rec.flags & _ARGS_TRUNCATED else list(rec.argv)


# ------------------------------------------------------------------ can it run here?

# Tracepoints the program attaches to; each must exist in tracefs.
TRACEPOINTS = (
    "sched:sched_process_exec", "sched:sched_process_fork", "sched:sched_process_exit",
    "sched:sched_process_free", "task:task_rename", "signal:signal_generate",
)
# The task fields the program reads (runctrace.bpf.c, rule 2): -D name -> (struct, member)
KERNEL_FIELDS = {
    "RT_OFF_TASK_MM": ("task_struct", "mm"),
    "RT_OFF_TASK_SIGNAL": ("task_struct", "signal"),
    "RT_OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "RT_OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "RT_OFF_SIGNAL_FLAGS": ("signal_struct", "flags"),
    "RT_OFF_SIGNAL_GROUP_EXIT_CODE": ("signal_struct", "group_exit_code"),
    "RT_OFF_TASK_NSPROXY": ("task_struct", "nsproxy"),
    "RT_OFF_NSPROXY_MNT_NS": ("nsproxy", "mnt_ns"),
    "RT_OFF_NSPROXY_PID_NS": ("nsproxy", "pid_ns_for_children"),
    "RT_OFF_NSPROXY_NET_NS": ("nsproxy", "net_ns"),
    "RT_OFF_MNT_NAMESPACE_NS": ("mnt_namespace", "ns"),
    "RT_OFF_PID_NAMESPACE_NS": ("pid_namespace", "ns"),
    "RT_OFF_NET_NS": ("net", "ns"),
    "RT_OFF_NS_COMMON_INUM": ("ns_common", "inum"),
    # the executed file: task->mm->exe_file->f_inode->{i_ino, i_sb->s_dev}
    "RT_OFF_MM_EXE_FILE": ("mm_struct", "exe_file"),
    "RT_OFF_FILE_F_INODE": ("file", "f_inode"),
    "RT_OFF_INODE_I_INO": ("inode", "i_ino"),
    "RT_OFF_INODE_I_SB": ("inode", "i_sb"),
    "RT_OFF_SUPER_BLOCK_S_DEV": ("super_block", "s_dev"),
}
# Sizes of fields whose width is the architecture's (-D name -> (struct, member))
KERNEL_SIZES = {
    "RT_SIZE_INODE_I_INO": ("inode", "i_ino"),
    "RT_SIZE_SUPER_BLOCK_S_DEV": ("super_block", "s_dev"),
}
_TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

def _bpf_syscall_problem() -> Optional[str]:
    try:
        _sys.bpf_map_create_probe()
    except OSError as err:
        if err.errno == errno.ENOSYS:
            return "the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL is off)"
        return f"bpf() refused to create a map: {err.strerror} (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
    return None


def _import_bcc() -> Any:
    # Imported here, never at module level: BCC's import alone takes ~100 ms, and a
    # missing module must become a reason, not an ImportError at import time.
    return importlib.import_module("bcc")


def _kernel_headers_problem() -> Optional[str]:
    release = platform.release()
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return None  # the user pointed BCC at headers; BCC will say if they are wrong
    mod = f"/lib/modules/{release}"
    for top in (f"{mod}/build", f"{mod}/source"):
        if os.path.exists(f"{top}/include/linux/kconfig.h"):
            return None
    if os.path.exists("/sys/kernel/kheaders.tar.xz"):  # CONFIG_IKHEADERS: BCC unpacks them
        return None
    return (
        f"no kernel headers: BCC compiles against {mod}/build (no include/linux/kconfig.h there "
        f"or in {mod}/source); install linux-headers and link them there (bootstrap.sh does), "
        "or set BCC_KERNEL_SOURCE"
    )


def tracefs_dir() -> Optional[str]:
    for path in _TRACEFS:
        if os.path.isdir(f"{path}/events/sched"):
            return path
    return None


def _tracefs_problem() -> Optional[str]:
    path = tracefs_dir()
    if path is None:
        return "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing"
    missing = [tp for tp in TRACEPOINTS if not os.path.exists(f"{path}/events/{tp.replace(':', '/')}/format")]
    if missing:
        return f"tracepoints missing from {path}/events: {', '.join(missing)}"
    return None


@functools.lru_cache(maxsize=1)
def _kernel_offsets() -> dict[str, int]:
    """KERNEL_FIELDS' offsets and KERNEL_SIZES' sizes in the running kernel
    (raises NotSupported without BTF)."""
    return kernel_offsets(KERNEL_FIELDS, sizes=KERNEL_SIZES)


def _btf_problem() -> Optional[str]:
    try:
        _kernel_offsets()
    except NotSupported as err:
        return str(err)
    return None


# ------------------------------------------------------------ runc's inodes


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


def _program_text() -> str:
    """The C text BCC compiles: runctrace.bpf.c with runctrace.h inlined.

    Inlined rather than found with -I, so that the package need not be a real
    directory on disk; ``#line`` keeps compiler messages pointing at the real files.
    """
    src = _bpf_source(_PROGRAM)
    include = f'#include "{_HEADER}"'
    before, found, after = src.partition(include)
    if not found:
        raise NotSupported(f"{_PROGRAM} does not include {_HEADER}")
    line = before.count("\n") + 2
    return f'{before}#line 1 "{_HEADER}"\n{_bpf_source(_HEADER)}\n#line {line} "{_PROGRAM}"{after}'


def _cflags() -> list[str]:
    flags = [f"-DRT_PY_EXEC_EVENT_SIZE={ct.sizeof(RtExecEvent)}"]
    flags += [f"-D{name}={offset}" for name, offset in _kernel_offsets().items()]
    # sched_process_exit's "group_dead" (6.x) tells the end of the last thread,
    # i.e. of the process; without it the program falls back to the leader's exit.
    tracefs = tracefs_dir()
    try:
        with open(f"{tracefs}/events/sched/sched_process_exit/format") as f:
            if "group_dead" in f.read():
                flags.append("-DRT_HAVE_GROUP_DEAD")
    except OSError:
        pass
    return flags


def program_text() -> str:
    """The BPF C text with its compile flags, as ``runctrace doctor --print-bpf`` shows it."""
    return "// cflags: " + " ".join(_cflags()) + "\n" + _program_text()


def _detach_in_parallel(bpf: Any) -> None:
    """Detach every tracepoint at once, for a quick close().

    Closing a tracepoint's perf event waits, inside the kernel, for an RCU grace
    period (perf_trace_event_unreg -> tracepoint_synchronize_unregister): ~40-75 ms
    each here, 0.6 s for all of them one after another, as BCC's cleanup() does it.
    Closed from one thread each, the waits partly overlap (measured: 0.32 s for 8).
    BCC's cleanup() then finds nothing left to detach.
    """
    from bcc.libbcc import lib  # BCC is loaded: this notifier runs on it

    fds = list(bpf.tracepoint_fds.values())
    bpf.tracepoint_fds.clear()
    threads = [
        threading.Thread(target=lib.bpf_close_perf_event_fd, args=(fd,), name="runctrace-detach")
        for fd in fds
    ]
    for t in threads:
        t.start()
    for t in threads:
        _join_fully(t)


def _join_fully(thread: threading.Thread, timeout: float = 5.0) -> None:
    """join(), then wait until the kernel has reaped the thread too.

    Python's join() returns when the thread's Python code is done, a few
    microseconds before the OS thread is gone from /proc/self/task. close()
    promises to leave no thread behind, so wait for that as well (bounded).
    """
    thread.join(timeout)
    if thread.native_id is None:
        return
    deadline = time.monotonic() + 0.5
    while os.path.exists(f"/proc/self/task/{thread.native_id}") and time.monotonic() < deadline:
        time.sleep(0.0005)


# --------------------------------------------------------------------- the notifier

# What the ring buffer callback returns to libbpf: 0 continues consuming.
_RB_CONTINUE = 0
_RECENT_RECORDS = 1024
# The kernel's drop counters (map "counters"), each with what it means for the user.
_DROP_COUNTERS = (
    (C["RT_C_RINGBUF_FULL"], "ring buffer full: kernel records dropped"),
    (C["RT_C_PROCS_FULL"], "procs map full: runc processes went unfollowed"),
)
_ANY_COUNTER = C["RT_C_ANY"]
BPF_NOEXIST, BPF_EXIST = 1, 2  # bpf(2) map update flags: insert only, update only
# An init that user space found exiting (see _watch) may not be a zombie yet; its
# REMOVE waits until it is (see _Ending). Polled this often, at most this long (the
# init of a PID namespace first waits for all its namespace's processes to die).
# The kernel's own exit records come when the init is a zombie already.
_ENDING_POLL_S = 0.001
_ENDING_MAX_S = 5.0
# A PID the kernel could not be asked to watch (its map full: 16,384 running
# containers) is looked at this often instead. Its exit status is lost.
_UNWATCHED_POLL_S = 1.0
_UNWATCHED_NOTE = "containers map full: some exits polled from /proc, their status unknown"
# As the fanotify backend's (its _IN_BIN_DIR_MASK): a file renamed or created there
_IN_BIN_DIR_MASK = _sys.In.CREATE | _sys.In.MOVED_TO | _sys.In.CLOSE_WRITE | _sys.In.ONLYDIR


@dataclass
class _Ending:
    """A watched init that is exiting, not yet a zombie."""

    status: Optional[int]
    when_ns: Optional[int]
    error: Optional[str]
    start: Optional[int]
    deadline: float


class BccNotifier(LoopNotifier):
    """Container ADD/REMOVE events from BPF tracepoints. See the module doc."""

    name = "bcc"

    @classmethod
    def supported(cls, runc_paths: tuple[str, ...] = ()) -> Support:
        try:
            if os.geteuid() != 0:
                return Support(False, "needs root (loading BPF programs and attaching tracepoints)")
            problem = _bpf_syscall_problem()
            if problem:
                return Support(False, problem)
            try:
                _import_bcc()
            except (ImportError, OSError) as err:
                return Support(
                    False,
                    f"BCC's Python module cannot be imported ({err}); it comes from Debian's "
                    "python3-bpfcc (PyPI's 'bcc' is another project); bootstrap.sh links it into the venv",
                )
            problem = _kernel_headers_problem() or _tracefs_problem() or _btf_problem()
            if problem:
                return Support(False, problem)
            try:
                binaries = find_runc(runc_paths)
            except NotSupported as err:
                return Support(False, str(err))
            return Support(True, "watching execs of the inodes of " + ", ".join(b.path for b in binaries))
        except Exception as err:  # supported() never raises
            return Support(False, f"unexpected error while checking: {err!r}")

    def __init__(self, callback: Optional[Callback] = None, runc_paths: tuple[str, ...] = ()) -> None:
        super().__init__(callback)
        support = self.supported(runc_paths)
        if not support:
            raise NotSupported(f"the bcc backend cannot run: {support.reason}")
        self._runc_paths = runc_paths
        self.binaries: list[RuncBinary] = find_runc(runc_paths)
        self.runc_files: Optional[RuncFiles] = None
        self._bin_ino = -1
        # Records received from the kernel, of any kind, and the last few of them
        # decoded (for debugging, and for tests that prove which processes' records
        # crossed: an exec storm of other programs must add none).
        self.kernel_events = 0
        self.recent_records: collections.deque[KernelRecord] = collections.deque(maxlen=_RECENT_RECORDS)
        self._records: list[bytes] = []
        self._dropped_seen = [0] * C["RT_C_COUNT"]
        self._counter_key, self._counter_value = ct.c_int(0), ct.c_uint64(0)
        self._starts: dict[int, int] = {}  # watched init pid -> its start time (ticks)
        self._ending: dict[int, _Ending] = {}
        self._unwatched: dict[int, Optional[int]] = {}  # pid -> start ticks: see _UNWATCHED_POLL_S
        self._unwatched_due = 0.0
        self._bpf: Any = None
        self._epoll: Optional[select.epoll] = None
        self._tracker: Optional[Tracker] = None
        try:
            self._bpf = self._load()
            # The kernel reports a `runc run`'s init starting its program, with its
            # PID: such calls need no watch on runc's state files (see Tracker).
            self._tracker = Tracker(self.name, self._emit, self.stats, self._watch, sees_inits=True)
            self._epoll = select.epoll(flags=select.EPOLL_CLOEXEC)
            # A BPF ring buffer's map fd is itself pollable (readable when records
            # wait): one epoll serves the ring buffer, the state watch and the wake-up fd.
            self._ring_fd = self._bpf[b"events"].map_fd
            self._counters_fd = self._bpf[b"counters"].map_fd
            # The per-exec map operations call libbpf directly with reused ctypes
            # values: BCC's Table wrapper costs tens of microseconds per call here.
            from bcc.libbcc import lib

            self._lib = lib
            procs, watched = self._bpf[b"procs"], self._bpf[b"containers"]
            self._procs_fd, self._pid_key = procs.map_fd, ct.c_uint32(0)
            self._watched_fd, self._watch_leaf, self._peek_leaf = watched.map_fd, watched.Leaf(), watched.Leaf()
            self._exit_leaf = watched.Leaf()
            for fd in (self._ring_fd, *self._tracker.states.fds(), self._wake):
                self._epoll.register(fd, select.EPOLLIN)
            self._watch_binary_dirs()
        except OSError as err:
            self._release()
            raise NotSupported(f"cannot set up the bcc backend: {err.strerror or err}") from err
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name="runctrace-bcc", daemon=True)
        self._thread.start()

    def _load(self) -> Any:
        bcc = _import_bcc()
        try:
            # BCC raises bare Exception for compile and attach failures.
            b = bcc.BPF(text=_program_text().encode(), cflags=_cflags())
        except Exception as err:
            raise NotSupported(f"BCC could not compile or attach the BPF program: {err}") from err
        try:
            self.runc_files = RuncFiles(b[b"runc_files"], b[b"runc_inos"])
            self.runc_files.follow(self.binaries)
            b[b"events"].open_ring_buffer(self._on_record)
        except BaseException:
            b.cleanup()
            raise
        return b

    # ------------------------------------------------------------------ public API

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake_loop()
        if self._thread is not threading.current_thread():
            _join_fully(self._thread)
        self._release()
        self._finish_iteration()

    def _release(self) -> None:
        if self._bpf is not None:
            _detach_in_parallel(self._bpf)
            self._bpf.cleanup()  # closes the programs, the maps and the ring buffer
            self._bpf = None
        if self.runc_files is not None:
            self.runc_files.close()
        if self._bin_ino >= 0:
            os.close(self._bin_ino)
            self._bin_ino = -1
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._close_wake()

    # ------------------------------------------------------------------ event loop

    def _run(self) -> None:
        self._loop_thread_started()
        try:
            while not self._closed.is_set():
                # No timeout unless an exit waits for its zombie (or a PID is watched
                # from user space): an idle recorder sleeps.
                timeout = _ENDING_POLL_S if self._ending else _UNWATCHED_POLL_S if self._unwatched else None
                try:
                    ready = self._epoll.poll(timeout)
                except InterruptedError:
                    continue
                fds = {fd for fd, _ in ready}
                # The ring buffer first: an exec arms the state watch that a state
                # event in the same wake-up may be for (and arming looks at once).
                if self._ring_fd in fds:
                    self._drain_ring()
                if self._bin_ino in fds:
                    self._read_bin_dirs()
                self._read_counters()  # kernel drops ask for a resync
                self._serve_shared(fds)
                if self._ending:
                    self._finish_endings()
                if self._unwatched and time.monotonic() >= self._unwatched_due:
                    self._poll_unwatched()
            # Exits that happened before close() was called are still delivered.
            self._drain_ring()
            self._read_counters()
            self._finish_endings(flush=True)
        except Exception as err:  # never die silently; close() still releases the fds
            self._loop_failed(err)

    def _on_record(self, _ctx, data, size) -> int:
        # Called by libbpf inside ring_buffer_consume: copy and return at once; the
        # records are handled afterwards, outside the C callback.
        self._records.append(ct.string_at(data, size))
        return _RB_CONTINUE

    def _drain_ring(self) -> None:
        self._bpf.ring_buffer_consume()
        records, self._records = self._records, []
        self.kernel_events += len(records)
        for raw in records:
            try:
                rec = decode_record(raw)
            except ValueError as err:
                log.warning("runctrace: bad ring buffer record: %s", err)
                self.stats.missed += 1
                continue
            self.recent_records.append(rec)
            try:
                self._on_record_decoded(rec)
            except Exception as err:  # one record must never end the loop, nor lose the rest of the batch
                self._message_failed(f"ring buffer record {rec.type} of PID {rec.pid}", err)

    def _on_record_decoded(self, rec: KernelRecord) -> None:
        if rec.type == _EV_EXEC:
            self._on_exec(rec)
        elif rec.type == _EV_INIT_EXEC:
            argv = _program_argv(rec)
            self._tracker.init_started(rec.pid, rec.init_pid, rec.namespaces, argv=argv)
            # A `runc start` that came before its `runc create` had exited: the
            # create's init, resolved from state.json already, is starting now,
            # and this is its argv too. (For a `run`, or a create that
            # init_started has just resolved, the argv was compared there: a no-op.)
            self._tracker.init_exec(rec.init_pid, argv)
        elif rec.type == _EV_ORPHAN_INIT_EXEC:
            # A create's init starting its program at `runc start`: the container
            # was resolved at its runc's exit, an earlier record.
            self._tracker.init_exec(rec.pid, _program_argv(rec))
        elif rec.type == _EV_RUNC_EXIT:
            self._tracker.runc_exited(rec.pid, rec.status, init_pid=rec.init_pid)
        elif rec.type == _EV_CONTAINER_EXIT:
            self._ended(rec.pid, rec.status, mono_to_wall_ns(rec.ktime_ns))

    def _read_counters(self) -> None:
        """Add what the kernel dropped since the last look to ``stats.lost``.

        Runs after every wake-up. BCC's table wrapper costs tens of microseconds a
        lookup there (on caches runc just evicted); one bpf_lookup_elem into reused
        ctypes values costs a few. Only the sum (RT_C_ANY) is looked at each time:
        the others only when it moved, which is seldom.
        """
        key, value = self._counter_key, self._counter_value
        key.value = _ANY_COUNTER
        if self._lib.bpf_lookup_elem(self._counters_fd, ct.byref(key), ct.byref(value)) < 0:
            return  # an array map always has the index: cannot happen
        if value.value == self._dropped_seen[_ANY_COUNTER]:
            return
        self._dropped_seen[_ANY_COUNTER] = value.value
        for index, what in _DROP_COUNTERS:
            key.value = index
            if self._lib.bpf_lookup_elem(self._counters_fd, ct.byref(key), ct.byref(value)) < 0:
                continue  # an array map always has the index: cannot happen
            delta = value.value - self._dropped_seen[index]
            if delta > 0:
                self._dropped_seen[index] = value.value
                self.stats.lost += delta
                self._resync = True
                log.warning("runctrace: %s (%d)", what, delta)
                if what not in self.stats.notes:
                    self.stats.notes.append(what)

    # ------------------------------------------------------------- runc invocations

    def _on_exec(self, rec: KernelRecord) -> None:
        pid = rec.pid
        runtime = self._runtime_of(rec)
        if runtime is None:
            self._forget_proc(pid)
            return
        argv = list(rec.argv)
        if rec.flags & C["RT_F_ARGS_TRUNCATED"]:
            argv = self._complete_argv(pid, argv)
        # (The kernel sent only calls with "create", "run" or "restore" among their
        # arguments, or cut short: the tracker's parse has the last word, below.)
        cwd, moved = runc_cwd(pid, rec.ktime_ns)
        rexec = self._tracker.runc_started(
            pid, argv, cwd, runtime, started_ns=rec.ktime_ns, cwd_may_be_bundle=moved
        )
        if rexec is None:
            # no container after all ("--root run", state, delete...): its exit is
            # of no interest. (A container is only ever made by create, run or restore.)
            self._forget_proc(pid)

    def _runtime_of(self, rec: KernelRecord) -> Optional[str]:
        """The watched binary's main path, or None if this exec is not a watched runc."""
        if not rec.flags & C["RT_F_UNVERIFIED"]:
            return self.runc_files.path(rec.runc_id)
        # The inode number matched on a filesystem where it may name another file
        # too (RuncFiles). The exec has completed: /proc/PID/exe is the file.
        try:
            return self.runc_files.path_run_by(rec.runc_id, rec.pid)
        except OSError:
            self.stats.missed += 1  # ended before it could be checked
            return None

    # ------------------------------------------------------------ replaced binaries

    def _watch_binary_dirs(self) -> None:
        """inotify on the directories of the runc binaries: a package upgrade renames
        a new file over the old one (MOVED_TO), an installer may create it in place
        (CREATE). The kernel matches inodes, so the map must follow (RuncFiles)."""
        self._bin_ino = _sys.inotify_init1(_sys.IN_NONBLOCK | _sys.IN_CLOEXEC)
        self._bin_rx = _sys.Reader(self._bin_ino, 16 * 1024)
        self._bin_dirs: dict[int, tuple[str, set[str]]] = {}  # wd -> (directory, runc file names)
        names: dict[str, set[str]] = {}
        for binary in self.binaries:
            for alias in binary.aliases:
                real = os.path.realpath(alias)
                names.setdefault(os.path.dirname(real), set()).add(os.path.basename(real))
        for directory, files in names.items():
            self._bin_dirs[_sys.inotify_add_watch(self._bin_ino, directory, _IN_BIN_DIR_MASK)] = (directory, files)
        self._epoll.register(self._bin_ino, select.EPOLLIN)

    def _read_bin_dirs(self) -> None:
        changed = False
        for rec in self._bin_rx.inotify_records():
            # an overflowed queue may have lost the one that mattered
            if rec.mask & _sys.IN_Q_OVERFLOW or rec.name in self._bin_dirs.get(rec.wd, ("", ()))[1]:
                changed = True
        if changed:
            self._refresh_binaries()

    def _refresh_binaries(self) -> None:
        """A runc file was replaced: watch the inode its paths now lead to, and no
        longer the old one (no path leads there; a process that runs it already is
        followed by its PID). Between the rename and this, an exec of the new file
        is not seen, as with the fanotify backend's mark."""
        try:
            binaries = find_runc(self._runc_paths)
        except NotSupported:
            return  # mid-replacement, or removed: the old entries stay (their inodes are held)
        self.binaries = binaries
        if self.runc_files.follow(binaries):
            log.info("runctrace: a runc binary was replaced; watching the inodes of %s",
                     ", ".join(self.runc_files.paths))

    def _complete_argv(self, pid: int, argv: list[str]) -> list[str]:
        """argv was cut in the kernel; /proc/PID/cmdline has it whole if runc still runs."""
        try:
            raw = read_proc(f"/proc/{pid}/cmdline")
        except OSError:
            self.stats.missed += 1
            return argv
        full = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]]
        if full[: max(len(argv) - 1, 0)] == argv[:-1]:
            return full
        self.stats.missed += 1
        return argv

    def _forget_proc(self, pid: int) -> None:
        self._pid_key.value = pid
        # fails with ENOENT if it has exited already: nothing to forget then
        self._lib.bpf_delete_elem(self._procs_fd, ct.byref(self._pid_key))

    # ------------------------------------------------------------------ containers

    def _watch(self, container: Container, expected_start: Optional[int], rexec: Optional[RuncExec]) -> None:
        """Have the kernel report the exit of ``container.pid``: the handshake.

        Insert the PID into ``containers``, *then* check that the process still
        runs. If it does, the kernel will report its exit. If it does not, its exit
        may have passed before the insert: whichever side deletes the PID from the
        map first reports the exit. The kernel, at exit, writes ``recent_exits``
        before its delete, so if we win the delete the exit status is there (for
        runc's own descendants).
        """
        pid = container.pid
        self._unwatched.pop(pid, None)  # an earlier process's, if any: the tracker ended it
        key = self._pid_key
        key.value = pid
        # the leaf is all zeros, always: the kernel writes the entry, not this copy
        err = 0
        if self._lib.bpf_update_elem(self._watched_fd, ct.byref(key), ct.byref(self._watch_leaf), BPF_NOEXIST) < 0:
            err = ct.get_errno()
            if err == errno.EEXIST and self._stale_entry(key):
                # a dead predecessor's, whose exit was not sent yet (its parent
                # ignored SIGCHLD: sent only when its task is freed): it must not
                # end this process. (The tracker ended that container already.)
                self._lib.bpf_delete_elem(self._watched_fd, ct.byref(key))
                if self._lib.bpf_update_elem(self._watched_fd, ct.byref(key), ct.byref(self._watch_leaf),
                                             BPF_NOEXIST) < 0:
                    err = ct.get_errno()
        stat = read_stat(pid)  # after the insert: see the docstring
        # The start time names *this* process, for the zombie wait in _ended.
        start = expected_start if expected_start is not None else (stat.start if stat else None)
        if err not in (0, errno.EEXIST):
            log.warning("runctrace: cannot watch PID %d in the kernel: %s; polling it", pid, os.strerror(err))
            if _UNWATCHED_NOTE not in self.stats.notes:
                self.stats.notes.append(_UNWATCHED_NOTE)
            self._unwatched[pid] = start
            return
        if stat_alive(stat, expected_start):
            self._starts[pid] = start
            return
        recent = self._recent_exit(pid, rexec)
        if recent is not None and self._leave_exit_to_kernel(key, recent, start):
            self._starts[pid] = start
            return
        if self._lib.bpf_delete_elem(self._watched_fd, ct.byref(key)) < 0:
            return  # the kernel deleted it: its CONTAINER_EXIT record is on the way
        self._starts[pid] = start
        if recent is not None and recent.flags & C["RT_F_STATUS_KNOWN"]:
            self._ended(pid, recent.status, mono_to_wall_ns(recent.exit_ns))
        else:
            self._ended(pid, None, None, error="exited before it was watched; exit status unknown")

    def _leave_exit_to_kernel(self, key: Any, recent: Any, start: Optional[int]) -> bool:
        """An init that has exited (``recent``: the kernel's record of it) and may not
        be a zombie yet. Rather than poll for the zombie, put its exit in its
        ``containers`` entry: the kernel then sends it at the parent's SIGCHLD, once
        it is one, as for any watched init. True if the kernel will.

        If the SIGCHLD passed before the entry had the exit, the kernel sent
        nothing: so the process is looked at again after the update, and a zombie
        (or a process gone) is left to the handshake's delete, whose winner reports.
        """
        leaf = self._exit_leaf
        leaf.exit_ns, leaf.status, leaf.flags = recent.exit_ns, recent.status, recent.flags
        if self._lib.bpf_update_elem(self._watched_fd, ct.byref(key), ct.byref(leaf), BPF_EXIST) < 0:
            return False  # the kernel deleted the entry already: the handshake tells
        return not process_ended(key.value, start)

    def _poll_unwatched(self) -> None:
        self._unwatched_due = time.monotonic() + _UNWATCHED_POLL_S
        for pid, start in list(self._unwatched.items()):
            if process_ended(pid, start):
                del self._unwatched[pid]
                self._tracker.pid_exited(pid, None, error="its exit was not watched in the kernel "
                                         "(containers map full); exit status unknown")

    def _stale_entry(self, key: Any) -> bool:
        """Is the ``containers`` entry at ``key`` a process that has exited already?"""
        leaf = self._peek_leaf
        return self._lib.bpf_lookup_elem(self._watched_fd, ct.byref(key), ct.byref(leaf)) == 0 and leaf.exit_ns != 0

    def _ended(self, pid: int, status: Optional[int], when_ns: Optional[int], error: Optional[str] = None) -> None:
        """A watched init is exiting: emit its REMOVE once it has become a zombie (or gone).

        The kernel sends the exit once it is (RT_F_ENDED), except in a rare case
        (runctrace.bpf.c, "when a watched exit is sent"); user space may find it
        exiting a moment before (_watch). A consumer that runs `runc delete` on the
        REMOVE must not be told the container is still running. (The fanotify
        backend's connector message comes after that point, so both agree.)
        """
        start = self._starts.pop(pid, None)
        if process_ended(pid, start):
            self._tracker.pid_exited(pid, status, when_ns, error)
        else:
            self._ending[pid] = _Ending(status, when_ns, error, start, time.monotonic() + _ENDING_MAX_S)

    def _finish_endings(self, flush: bool = False) -> None:
        now = time.monotonic()
        for pid, e in list(self._ending.items()):
            if flush or now > e.deadline or process_ended(pid, e.start):
                del self._ending[pid]
                self._tracker.pid_exited(pid, e.status, e.when_ns, e.error)

    def _recent_exit(self, pid: int, rexec: Optional[RuncExec]) -> Any:
        """How runc's descendant ``pid`` ended, if it was forked by this runc call."""
        if rexec is None or rexec.started_ns is None:
            return None  # not runc's child as far as we know: no way to tell PID reuse
        table = self._bpf[b"recent_exits"]
        try:
            leaf = table[table.Key(pid)]
        except KeyError:
            return None
        return leaf if leaf.start_ns >= rexec.started_ns else None


__all__ = ["BccNotifier", "KernelRecord", "RuncFiles", "decode_record", "kernel_dev", "program_text", "TRACEPOINTS"]
