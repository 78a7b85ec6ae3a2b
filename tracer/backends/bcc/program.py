"""The BPF program: whether it can run here, its C text and flags, compiling,
attaching and detaching it.

The C lives in ``bpf/`` (``runctrace.bpf.c`` and the header it shares with
Python, ``runctrace.h``). BCC compiles it at run time, with ``-D`` constants
for what only the running kernel knows: the offsets of the few task fields the
program reads (from the kernel's BTF, :mod:`.btf`) and whether
``sched_process_exit`` says which thread ends a process. ``runctrace doctor
--print-bpf`` (a hidden flag) prints :func:`program_text`: exactly what BCC is given.
"""

from __future__ import annotations

import ctypes as ct
import errno
import functools
import importlib
import os
import platform
import threading
import time
from typing import Any, Optional

from runctrace import _sys
from runctrace.backends.bcc.btf import kernel_offsets
from runctrace.backends.bcc.records import HEADER, RtExecEvent, bpf_source
from runctrace.errors import NotSupported

PROGRAM = "runctrace.bpf.c"

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

# ------------------------------------------------------------------ can it run here?


def setup_problem() -> Optional[str]:
    """Why the program cannot be compiled and attached here, or None if it can.

    Each check names what is missing and how to provide it; the first that
    fails is the reason.
    """
    if os.geteuid() != 0:
        return "needs root (loading BPF programs and attaching tracepoints)"
    problem = _bpf_syscall_problem()
    if problem:
        return problem
    try:
        import_bcc()
    except (ImportError, OSError) as err:
        return (
            f"BCC's Python module cannot be imported ({err}); it comes from Debian's "
            "python3-bpfcc (PyPI's 'bcc' is another project); bootstrap.sh links it into the venv"
        )
    return _kernel_headers_problem() or _tracefs_problem() or _btf_problem()


def _bpf_syscall_problem() -> Optional[str]:
    try:
        _sys.bpf_map_create_probe()
    except OSError as err:
        if err.errno == errno.ENOSYS:
            return "the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL is off)"
        return f"bpf() refused to create a map: {err.strerror} (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
    return None


def import_bcc() -> Any:
    # Imported here, never at module level: BCC's import alone takes about 100 ms
    # (it loads LLVM), and a missing module must become a reason, not an
    # ImportError at import time.
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


# ------------------------------------------------------------------ the text


def _program_text() -> str:
    """The C text BCC compiles: runctrace.bpf.c with runctrace.h inlined.

    Inlined rather than found with -I, so that the package need not be a real
    directory on disk; ``#line`` keeps compiler messages pointing at the real files.
    """
    src = bpf_source(PROGRAM)
    include = f'#include "{HEADER}"'
    before, found, after = src.partition(include)
    if not found:
        raise NotSupported(f"{PROGRAM} does not include {HEADER}")
    line = before.count("\n") + 2
    return f'{before}#line 1 "{HEADER}"\n{bpf_source(HEADER)}\n#line {line} "{PROGRAM}"{after}'


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


# ------------------------------------------------------------------ load, unload


def compile_and_attach() -> Any:
    """The program compiled, loaded and attached to its tracepoints: a ``bcc.BPF``.
    Raises NotSupported, with BCC's message, if it cannot be."""
    bcc = import_bcc()
    try:
        # BCC raises bare Exception for compile and attach failures.
        return bcc.BPF(text=_program_text().encode(), cflags=_cflags())
    except Exception as err:
        raise NotSupported(f"BCC could not compile or attach the BPF program: {err}") from err


def unload(bpf: Any) -> None:
    """Detach every tracepoint, then close the programs, the maps and the ring buffer."""
    _detach_in_parallel(bpf)
    bpf.cleanup()


def _detach_in_parallel(bpf: Any) -> None:
    """Detach every tracepoint at once, for a quick close().

    Closing a tracepoint's perf event waits, inside the kernel, for an RCU grace
    period (perf_trace_event_unreg -> tracepoint_synchronize_unregister), tens of
    milliseconds each: one after another, as BCC's cleanup() closes them, the
    program's tracepoints would make close() take most of a second. Closed from
    one thread each, the waits overlap. BCC's cleanup() then finds nothing left
    to detach.
    """
    from bcc.libbcc import lib  # BCC is loaded: the program was compiled with it

    fds = list(bpf.tracepoint_fds.values())
    bpf.tracepoint_fds.clear()
    threads = [
        threading.Thread(target=lib.bpf_close_perf_event_fd, args=(fd,), name="runctrace-detach")
        for fd in fds
    ]
    for t in threads:
        t.start()
    for t in threads:
        join_fully(t)


def join_fully(thread: threading.Thread, timeout: float = 5.0) -> None:
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


__all__ = ["KERNEL_FIELDS", "KERNEL_SIZES", "PROGRAM", "TRACEPOINTS", "compile_and_attach", "import_bcc",
           "join_fully", "program_text", "setup_problem", "tracefs_dir", "unload"]
