"""The eBPF backend (BCC): runc's execs, its children and the containers' exits, seen in the kernel.

How it works, and why each part is needed
-----------------------------------------
1. **Tracepoints, filtered in the kernel** (``runctrace/bpf/runctrace.bpf.c``). At
   ``sched_process_exec`` the program reads which file the new program is (its
   superblock's device and inode number, from ``mm->exe_file``) and looks it up in
   a BPF hash map of the watched runc binaries' inodes, which user space fills
   from :func:`~runctrace.runc.binaries.find_runc` and keeps up to date as a package
   upgrade replaces a binary (:mod:`.inodes`). Paths serve only to find the
   inodes: runc run through a hard link or symlink of any name, or through
   ``/proc/self/fd/N``, is the same inode, as for the fanotify backend's mark. For
   a match the program copies argv from the new process's memory and sends it at
   once. Every other process on the host costs four reads of kernel memory and
   two hash lookups in the kernel, and nothing in user space. ``runc init``
   re-executes ``/proc/self/exe``, runc's own inode: its argument ``init`` makes
   no container, and the kernel drops it (its next exec, of a memfd copy of
   runc, is another inode). No ``syscalls:`` tracepoint is used: attaching one
   slows every syscall of every process on the host, measurably for a
   syscall-bound program; the few task fields read instead are at offsets from
   the kernel's BTF (:mod:`.btf`), because the kernel headers BCC compiles
   against may belong to another kernel version.
2. **runc's process tree and exits, in the kernel.** The program follows each runc
   process and its descendants down to the container's init (three levels), and
   reads how each ends (its wait status) from the task as its last thread exits.
   Only the container init starting its program (with its PID and the argv the
   kernel held at that exec, which the tracker compares with the spec's; once its
   runc has ended, as a create's init does at ``runc start``, in a record of its
   own), the end of a runc process (with that PID too, if seen), and the end of a
   PID user space put in the ``containers`` map (a container's init), cross to
   user space. A container's exit is sent once the init is a zombie, from the
   parent's notification (``signal_generate``) or ``sched_process_free``: the exit
   tracepoint fires a moment before, when ``runc delete`` would still call the
   container running, and user space would have to poll for the zombie.
3. **runc's own records, in user space** (:mod:`runctrace.runc.tracker`, shared with the
   fanotify backend): a `runc run` is resolved when the kernel reports its init
   starting its program; a create or restore by its ``--pid-file`` when runc exits,
   or else by ``state.json`` as soon as runc writes it. The bundle's config.json
   gives the spec. No state files are watched for a `runc run`: the kernel already
   says when and which, and a watch would cost CPU and several wake-ups per
   container. The fanotify backend learns the same from the connector.

The race between "the container's init ended" and "user space learned its PID and
asked the kernel to watch it" is closed by a handshake on the ``containers`` map
(:meth:`.exits.ExitWatch.watch`) and by ``recent_exits``, which keeps the exit
status of runc's recently ended descendants.

runc's working directory, needed for a relative or missing ``--bundle``, is read
from ``/proc/PID/cwd`` when the exec record arrives, as the fanotify backend does;
see :func:`runctrace.runc.proc.runc_cwd` for the one case where runc may have moved
by then.

Everything runs on one thread around one epoll (the ring buffer, the binaries'
directories, the state watch and a wake-up eventfd): no thread per container.

The modules
-----------
- :mod:`.records`: the ctypes mirrors of ``bpf/runctrace.h`` and :func:`decode_record`
  (pure functions over bytes);
- :mod:`.program`: whether the program can run here, its C text and ``-D`` flags
  (:func:`program_text`), compiling, attaching and detaching it;
- :mod:`.btf`: struct offsets from the running kernel's BTF;
- :mod:`.inodes`: the watched binaries' inode map, and following a replaced binary;
- :mod:`.exits`: the ``containers`` map and the exit handshake;
- :mod:`.notifier`: :class:`BccNotifier`, its loop, and the handoff to the tracker.
"""

from runctrace.backends.bcc import program
from runctrace.backends.bcc.inodes import FileId, RuncFiles, file_id, kernel_dev
from runctrace.backends.bcc.notifier import BccNotifier
from runctrace.backends.bcc.program import KERNEL_FIELDS, KERNEL_SIZES, TRACEPOINTS, program_text
from runctrace.backends.bcc.records import C, KernelRecord, RtEvent, RtExecEvent, decode_record

__all__ = ["BccNotifier", "C", "FileId", "KERNEL_FIELDS", "KERNEL_SIZES", "KernelRecord", "RtEvent", "RtExecEvent",
           "RuncFiles", "TRACEPOINTS", "decode_record", "file_id", "kernel_dev", "program", "program_text"]
