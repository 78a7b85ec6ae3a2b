/* runctrace.bpf.c: see runc execute, follow its children, report exits.
 *
 * Compiled at run time by BCC (runctrace/backends/bcc/program.py), which inlines runctrace.h here
 * (`runctrace doctor --print-bpf` shows the exact text and flags).
 *
 * Rules this program follows, and why:
 *
 * 1. Tracepoints only, and none of the "syscalls:" ones. Tracepoints work on
 *    kernels built without kprobes (CONFIG_KPROBES off). Attaching any syscall
 *    tracepoint marks every task on the host for syscall tracing, so each syscall
 *    of every process takes the slow entry and exit path (a syscall-bound program
 *    runs about a tenth slower: bench/bench_syscall_tax.py), whether or not it
 *    ever runs a container.
 *    So argv and exit statuses are read from the current task instead (rule 2).
 * 2. Kernel struct fields only at offsets from the running kernel's BTF. The only
 *    headers on the machine are from another kernel version, so an offsetof() from
 *    them would silently read garbage. User space reads the offsets of the few
 *    fields used from /sys/kernel/btf/vmlinux (runctrace/backends/bcc/btf.py) and passes them
 *    as RT_OFF_* constants; they are read with bpf_probe_read_kernel, never by
 *    dereferencing a struct pointer. BCC builds each tracepoint's "args" struct
 *    from tracefs' format files at run time, which is always right.
 * 3. Filter in the kernel. Every exec, fork, exit and signal on the host passes
 *    through here; only these cross to user space:
 *      - RT_EV_EXEC: a watched runc binary was executed (with its argv);
 *      - RT_EV_INIT_EXEC: that runc's container init is starting its program
 *        (with the program's argv);
 *      - RT_EV_ORPHAN_INIT_EXEC: a container init starting its program after
 *        its runc ended (a create's, at `runc start`), once per init (with the
 *        program's argv);
 *      - RT_EV_RUNC_EXIT: such a runc process ended (with its exit status);
 *      - RT_EV_CONTAINER_EXIT: a PID user space asked about ended (the
 *        container's init), with its exit status.
 *    A runc is known by the file it executes (its inode), never by the
 *    filename the caller passed: see exe_runc.
 *    A runc exec none of whose arguments is "create", "run" or "restore" (state,
 *    start, delete, kill, exec, init...) makes no container: it is not sent, and
 *    not followed. On a containerd host that is most runc calls. A false match
 *    ("--root run") costs user space a parse; the command word itself is always
 *    an argument of its own, so a call that makes a container is never dropped
 *    (argv that could not be read whole is sent, marked RT_F_ARGS_TRUNCATED).
 *    An exec storm of unrelated programs costs four reads of kernel memory and
 *    two hash lookups per exec in the kernel (about 0.35 us of BPF time per
 *    exec, as kernel.bpf_stats_enabled counts it), and nothing in user space.
 *
 * Maps:
 *   runc_files   filled by user space: the inode (device and number) of every
 *                runc binary to watch, kept up to date as binaries are replaced.
 *   runc_inos    the same inode numbers alone, a cheap first test.
 *   procs        runc processes and their descendants down to RT_MAX_DEPTH: whose
 *                runc each is, and when it started. Kernel-owned.
 *   containers   container init PIDs user space watches. User space inserts,
 *                the kernel deletes once the process is a zombie (see "the
 *                handshake" and "when an exit is sent" below).
 *   recent_exits how runc's descendants ended, for user space to look up when a
 *                container's init was gone before it could be put in "containers".
 *   counters     drops, so that a loss is never silent.
 *
 * The handshake for "containers": at exit, the kernel writes recent_exits first,
 * then (once the process is a zombie) deletes the PID from containers and
 * reports an exit only if that delete succeeded. User space inserts the PID,
 * then checks that the process is still alive (not exiting); if not, it deletes
 * the PID itself: whichever side deletes successfully reports the exit, so there
 * is exactly one report and no gap.
 */
#include <uapi/linux/ptrace.h>
#include "runctrace.h"

/* Offsets in the running kernel's structs (rule 2), from user space's -D flags:
 * task_struct's mm, signal and nsproxy; mm_struct's arg_start, arg_end and
 * exe_file; file's f_inode; inode's i_ino and i_sb; super_block's s_dev;
 * signal_struct's flags and group_exit_code; nsproxy's mnt_ns, pid_ns_for_children
 * and net_ns; the ns_common in mnt_namespace, pid_namespace and net; its inum.
 * And two sizes, RT_SIZE_*, of fields whose type differs between architectures. */
#ifndef RT_OFF_TASK_MM
#error "compile with the RT_OFF_* offsets from the kernel's BTF (runctrace/backends/bcc/program.py does)"
#endif
/* inode.i_ino is an unsigned long: 4 bytes on 32-bit kernels. Read into its own
 * type, so that the value is right whatever the byte order. */
#if RT_SIZE_INODE_I_INO == 8
typedef u64 rt_ino_t;
#elif RT_SIZE_INODE_I_INO == 4
typedef u32 rt_ino_t;
#else
#error "inode.i_ino is neither 4 nor 8 bytes in this kernel's BTF"
#endif
_Static_assert(RT_SIZE_SUPER_BLOCK_S_DEV == sizeof(u32), "super_block.s_dev (dev_t) is not 32 bits");
/* signal_struct.flags: the whole thread group is exiting, and group_exit_code
 * holds its wait(2) status (include/linux/sched/signal.h, unchanged since 2.6). */
#define RT_SIGNAL_GROUP_EXIT 0x4

/* User space compiles with -DRT_PY_EXEC_EVENT_SIZE=sizeof(its ctypes mirror) */
_Static_assert(sizeof(struct rt_exec_event) == RT_PY_EXEC_EVENT_SIZE,
               "runctrace/backends/bcc/records.py's RtExecEvent does not match struct rt_exec_event");
_Static_assert((RT_ARGS_SIZE & (RT_ARGS_SIZE - 1)) == 0, "RT_ARGS_SIZE must be a power of two");

/* 512 pages = 2 MiB: ~3000 typical runc execs (~600 bytes each) before the reader
 * must catch up. A full buffer drops records; each drop is counted. */
BPF_RINGBUF_OUTPUT(events, 512);

BPF_HASH(runc_files, struct rt_file_id, struct rt_runc_file, RT_MAX_RUNC_FILES);
/* The inode numbers of runc_files' keys, looked up first: see exe_runc. */
BPF_HASH(runc_inos, u64, u8, RT_MAX_RUNC_FILES);
/* Not LRU: evicting a runc entry would lose its exit without a trace. A full map
 * refuses inserts, and that is counted. */
BPF_HASH(procs, u32, struct rt_proc, 16384);
/* Not preallocated: an entry that user space deletes while the kernel is writing
 * an exit into it must not be handed to the next insert at once (a preallocated
 * map recycles it at once), or that exit would land in another PID's entry. */
BPF_F_TABLE("hash", u32, struct rt_watch, containers, 16384, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", u32, struct rt_recent_exit, recent_exits, 4096);
BPF_ARRAY(counters, u64, RT_C_COUNT);
/* A 8.5 KiB event does not fit on the 512-byte BPF stack. */
BPF_PERCPU_ARRAY(scratch, struct rt_exec_event, 1);

static __always_inline void count_one(u32 which)
{
    u64 *n = counters.lookup(&which);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* Each drop is counted twice: by kind, and in RT_C_ANY, so that user space looks
 * at one value after each wake-up and at the others only when it moved. */
static __always_inline void count(u32 which)
{
    count_one(which);
    count_one(RT_C_ANY);
}

/* How a record is sent. RT_RB_LATER: no wake-up; user space reads it with the
 * next record that wakes it. RT_RB_NOW: wake user space. Not the default (0):
 * that is "wake only if user space has read everything before this record", so
 * after one unread RT_RB_LATER record nothing would wake it again. */
#define RT_RB_NOW BPF_RB_FORCE_WAKEUP
#define RT_RB_LATER BPF_RB_NO_WAKEUP

static __always_inline u64 read_kernel_u64(u64 addr)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

/* The inode number of the namespace at nsproxy + ns_off, whose ns_common is at
 * common_off in its struct (0 if unreadable). */
static __always_inline u32 ns_inum(u64 nsproxy, u64 ns_off, u64 common_off)
{
    u64 ns = read_kernel_u64(nsproxy + ns_off);
    u32 inum = 0;
    if (ns)
        bpf_probe_read_kernel(&inum, sizeof(inum), (void *)(ns + common_off + RT_OFF_NS_COMMON_INUM));
    return inum;
}

/* The current task's mount, PID and network namespaces. For a container's init,
 * pid_ns_for_children is its own PID namespace: runc cloned it into a new one,
 * and nothing of it has called unshare(CLONE_NEWPID) since. */
static __always_inline void current_namespaces(struct rt_event *ev)
{
    u64 nsproxy = read_kernel_u64(bpf_get_current_task() + RT_OFF_TASK_NSPROXY);
    if (!nsproxy)
        return;
    ev->mntns = ns_inum(nsproxy, RT_OFF_NSPROXY_MNT_NS, RT_OFF_MNT_NAMESPACE_NS);
    ev->pidns = ns_inum(nsproxy, RT_OFF_NSPROXY_PID_NS, RT_OFF_PID_NAMESPACE_NS);
    ev->netns = ns_inum(nsproxy, RT_OFF_NSPROXY_NET_NS, RT_OFF_NET_NS);
}

/* A header-only record: RT_EV_RUNC_EXIT, RT_EV_CONTAINER_EXIT.
 * rb_flags: RT_RB_NOW or RT_RB_LATER. Returns 0 if it was sent. */
static __always_inline int send_event(u32 type, u32 pid, u64 now, u32 status, u32 flags, u32 init_pid,
                                      u64 rb_flags)
{
    struct rt_event ev = {};
    ev.type = type;
    ev.pid = pid;
    ev.ktime_ns = now;
    ev.status = status;
    ev.flags = flags;
    ev.init_pid = init_pid;
    int err = events.ringbuf_output(&ev, sizeof(ev), rb_flags);
    if (err)
        count(RT_C_RINGBUF_FULL);
    return err;
}

static __always_inline u32 current_tgid(void)
{
    return bpf_get_current_pid_tgid() >> 32;
}

/* ------------------------------------------------------------------ argv at an exec */

/* Is this argument (n bytes with its NUL) a runc command that makes a container? */
static __always_inline bool creates_word(const char *a, int n)
{
    if (n == 4)
        return a[0] == 'r' && a[1] == 'u' && a[2] == 'n';
    if (n == 7)
        return a[0] == 'c' && a[1] == 'r' && a[2] == 'e' && a[3] == 'a' && a[4] == 't' && a[5] == 'e';
    if (n == 8)
        return a[0] == 'r' && a[1] == 'e' && a[2] == 's' && a[3] == 't' && a[4] == 'o' && a[5] == 'r' &&
               a[6] == 'e';
    return false;
}

/* Copy the current process's argv into e->args and set e->argc and e->args_size,
 * at sched_process_exec: for runc's exec record, and for its container init's
 * when the init starts the program (note_init_exec). The argv is read from the
 * new process's own memory, mm->arg_start..arg_end (NUL-separated strings, as
 * /proc/PID/cmdline shows them), which the kernel has just written: no page of it
 * can be swapped out yet, and the program has not run a single instruction, so
 * it is the argv of *this* exec, not of one the program makes next.
 *
 * Only whole arguments are kept. Returns RT_F_ARGS_TRUNCATED if argv could not be
 * copied whole (more than RT_MAX_ARGS arguments, one of RT_ARG_MAX bytes or more,
 * more than the buffer holds, or unreadable), plus RT_F_MAY_CREATE if an argument
 * is "create", "run" or "restore" (which only runc's record uses). */
static __always_inline u32 copy_argv(struct rt_exec_event *e, u64 mm)
{
    u32 flags = 0;
    u64 arg_start = read_kernel_u64(mm + RT_OFF_MM_ARG_START);
    u64 arg_end = read_kernel_u64(mm + RT_OFF_MM_ARG_END);
    /* An argv of at least one byte is always there (the kernel gives an empty one
     * a ""): nothing to read means it could not be read. */
    if (arg_end <= arg_start)
        flags |= RT_F_ARGS_TRUNCATED;
    u64 total = arg_end > arg_start ? arg_end - arg_start : 0;
    u32 off = 0, argc = 0;
    for (int i = 0; i < RT_MAX_ARGS; i++) {
        if (off >= total)
            break;
        /* Keep off + RT_ARG_MAX < RT_ARGS_SIZE so the verifier can bound the write
         * and args_size stays below RT_ARGS_SIZE. */
        if (off > RT_ARGS_SIZE - RT_ARG_MAX - 1)
            break;
        int n = bpf_probe_read_user_str(&e->args[off], RT_ARG_MAX, (void *)(arg_start + off));
        /* Unreadable, or an argument of RT_ARG_MAX bytes or more (the next read
         * would start inside it): stop here. */
        if (n <= 0 || n == RT_ARG_MAX)
            break;
        if (creates_word(&e->args[off], n))
            flags |= RT_F_MAY_CREATE;
        off += n;
        argc++;
    }
    if (off < total)
        flags |= RT_F_ARGS_TRUNCATED;
    e->argc = argc;
    e->args_size = off;
    return flags;
}

/* Send an exec record whose argv copy_argv filled, and wake user space. Only its
 * first offsetof(args) + args_size bytes: what follows is an earlier record's.
 * Returns 0 if it was sent. */
static __always_inline int send_exec_record(struct rt_exec_event *e)
{
    u32 size = offsetof(struct rt_exec_event, args) + (e->args_size & (RT_ARGS_SIZE - 1));
    if (size > sizeof(*e)) /* never true; bounds the size for the verifier */
        size = sizeof(*e);
    int err = events.ringbuf_output(e, size, RT_RB_NOW);
    if (err)
        count(RT_C_RINGBUF_FULL);
    return err;
}

/* ------------------------------------------------------------------ exec of runc */

/* The watched runc that the current task now runs, or NULL: the executed
 * file's identity (its superblock's device and its inode number), looked up in
 * runc_files.
 *
 * Matching the file, not the filename the caller passed, sees runc however it
 * was reached: a hard link or a symlink of any name, a relative path,
 * /proc/self/fd/N or execveat() of an open fd, a bind mount in another mount
 * namespace. A filename can only be compared with paths known in advance, which
 * all of those escape; and a guess by name ("ends in runc") let any program so
 * named through to user space while missing runc under another name. The
 * filename is still sent, for display.
 *
 * Why mm->exe_file: sched_process_exec fires once the exec is past its point
 * of no return, and begin_new_exec() has by then set the new mm's exe_file to
 * the file being executed (set_mm_exe_file) and made that mm the task's
 * (exec_mmap). Nothing can change it meanwhile: only the task itself can
 * (prctl PR_SET_MM), and it is inside this exec. For a "#!" script, exe_file is the
 * interpreter (the script's inode is not at hand here): a wrapper script at a
 * watched path is seen through the runc binary it executes, which must be
 * watched. file.f_inode is the inode the file was opened on (for overlayfs, the
 * overlay's own, whose device is the overlay's superblock's).
 *
 * This runs at every exec on the host, so the inode number is tested alone
 * first (runc_inos): four reads of kernel memory (with task->mm) and one lookup
 * rule out nearly every exec, and only an exec of a watched runc's inode number
 * pays the two more reads of its device (measured: a fifth less BPF time per
 * exec than reading all six). */
static __always_inline struct rt_runc_file *exe_runc(u64 mm)
{
    u64 file = read_kernel_u64(mm + RT_OFF_MM_EXE_FILE);
    u64 inode = file ? read_kernel_u64(file + RT_OFF_FILE_F_INODE) : 0;
    if (!inode)
        return NULL;
    rt_ino_t ino = 0;
    if (bpf_probe_read_kernel(&ino, sizeof(ino), (void *)(inode + RT_OFF_INODE_I_INO)))
        return NULL;
    struct rt_file_id id = {}; /* the padding too: the whole struct is hashed */
    id.ino = ino;
    if (!runc_inos.lookup(&id.ino))
        return NULL;
    u64 sb = read_kernel_u64(inode + RT_OFF_INODE_I_SB);
    if (!sb || bpf_probe_read_kernel(&id.dev, sizeof(id.dev), (void *)(sb + RT_OFF_SUPER_BLOCK_S_DEV)))
        return NULL;
    return runc_files.lookup(&id);
}

/* The record of a container init starting its program: RT_EV_INIT_EXEC (pid: its
 * runc, init_pid: the init, and the init's namespaces) or RT_EV_ORPHAN_INIT_EXEC
 * (pid: the init), with the program's argv as this exec gave it (copy_argv).
 * Returns 0 if it was sent.
 *
 * It is built in the per-CPU scratch buffer, as runc's exec record is, and both
 * may be built in one run of sched_process_exec (a container whose program is a
 * watched runc): this one first, and it is in the ring buffer (ringbuf_output
 * copies it) before runc's overwrites the buffer. Nothing else uses the buffer,
 * and a tracepoint's program never runs nested on one CPU. */
static __always_inline int send_init_exec(u32 type, u32 pid, u32 init_pid, u64 mm)
{
    u32 zero = 0;
    struct rt_exec_event *e = scratch.lookup(&zero);
    if (!e)
        return -1; /* cannot happen: the array's one entry always exists */
    /* The container's program: "create" among its arguments means nothing. */
    u32 flags = copy_argv(e, mm) & RT_F_ARGS_TRUNCATED;
    e->filename[0] = 0; /* not sent for an init: user space has no use for it */
    e->runc_id = 0;
    e->hdr.type = type;
    e->hdr.pid = pid;
    e->hdr.ktime_ns = bpf_ktime_get_ns();
    e->hdr.status = 0;
    e->hdr.flags = flags;
    e->hdr.init_pid = init_pid;
    e->hdr.mntns = e->hdr.pidns = e->hdr.netns = 0;
    if (type == RT_EV_INIT_EXEC)
        current_namespaces(&e->hdr);
    return send_exec_record(e);
}

/* A descendant of runc exec'd. If it is runc's container init (at its depth, and
 * named by runc's nsexec: see task_rename), the container is starting its
 * program. While its runc runs (a `runc run`), tell user space now
 * (RT_EV_INIT_EXEC), with the PID and namespaces, so the call is resolved
 * without waiting for runc's state.json, and note it in runc's entry, for its
 * exit record.
 *
 * Once its runc has ended (a create's init, which waits for `runc start`; at
 * times a detached run's), user space has resolved the container from that
 * runc's exit record, ahead of this one in the ring buffer, and wants to
 * compare the program's argv with the spec: RT_EV_ORPHAN_INIT_EXEC says when.
 * Why here, and not at an exec of a PID in "containers": this entry was found by
 * the lookup every exec already makes, so the host's other execs pay nothing
 * more (a "containers" lookup would be a third hash lookup for each); and it does
 * not depend on when user space inserted the watch: one inserted late, after
 * `runc start`, would miss the program's start and take its next exec (sh -c
 * 'exec x') for it.
 *
 * Both records carry the program's argv, copied here: user space compares it
 * with the spec's process.args. Read from /proc when the record arrives, it is
 * often the next program's already (an entrypoint that ends in `exec` replaces
 * itself within a millisecond). Only an init pays the copy, once per container:
 * any other exec has left at the first test below. */
static __always_inline void note_init_exec(struct rt_proc *p, u32 tgid, u64 mm)
{
    if (p->kind != RT_KIND_DESC || p->depth != RT_MAX_DEPTH || !(p->flags & RT_P_INIT_NAMED))
        return;
    /* Once: the program's own execs, and its renames, are not its start. */
    p->flags = (p->flags & ~RT_P_INIT_NAMED) | RT_P_STARTED;
    u32 runc = p->runc;
    u32 type = RT_EV_ORPHAN_INIT_EXEC, pid = tgid, init_pid = 0;
    struct rt_proc *r = procs.lookup(&runc);
    /* p->runc may name a runc that has exited (a create's init waits for `runc
     * start`) and whose PID a new runc has since taken: that one started after
     * this descendant was forked, so it is not its runc. */
    if (r && r->kind == RT_KIND_RUNC && r->start_ns <= p->start_ns) {
        if (r->init_pid)
            return;
        r->init_pid = tgid;
        type = RT_EV_INIT_EXEC;
        pid = runc;
        init_pid = tgid;
    } else {
        r = NULL;
    }
    /* One call for both records: each call site would inline another copy of the
     * argv loop for the verifier to walk. */
    if (send_init_exec(type, pid, init_pid, mm) == 0 && r)
        r->init_sent = 1;
}

/* runc's nsexec names the container's init RT_INIT_COMM (prctl PR_SET_NAME)
 * before it execs the program. The name is gone by sched_process_exec (the exec
 * renames the task first), so it is noted here, on the descendant's entry. */
TRACEPOINT_PROBE(task, task_rename)
{
    u32 pid = args->pid;
    struct rt_proc *p = procs.lookup(&pid);
    if (!p || p->kind != RT_KIND_DESC || p->depth != RT_MAX_DEPTH)
        return 0; /* the common case: not runc's */
    if (p->flags & RT_P_STARTED)
        return 0; /* the container's program, naming itself: not runc's nsexec */
    const char want[] = RT_INIT_COMM;
    for (int i = 0; i < sizeof(want); i++)
        if (args->newcomm[i] != want[i])
            return 0;
    p->flags |= RT_P_INIT_NAMED;
    return 0;
}

/* sched_process_exec: a successful exec, in the new program's context. If the
 * file is a watched runc (exe_runc), send its argv (copy_argv). A failed exec (a
 * PATH search tries /usr/local/sbin/runc, ... in turn) never gets here. `runc
 * init` re-executes runc's own file (/proc/self/exe): it matches, and its
 * argument "init" makes no container, so it stops at the look at the arguments
 * below.
 *
 * Every exec passes here: a runc descendant's exec may be its container's init
 * starting (note_init_exec). */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 zero = 0;
    u32 tgid = current_tgid();
    u64 mm = read_kernel_u64(bpf_get_current_task() + RT_OFF_TASK_MM);
    struct rt_proc *p = procs.lookup(&tgid);
    if (p)
        note_init_exec(p, tgid, mm);

    struct rt_runc_file *runc = mm ? exe_runc(mm) : NULL;
    if (!runc)
        return 0; /* the common case: not runc, nothing more to do */
    u32 flags = runc->flags, runc_id = runc->id;

    struct rt_exec_event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    /* The name the caller used, for display only (user space cuts it at its
     * NUL; what follows may be an earlier record's). */
    if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
                                  (char *)args + (args->data_loc_filename & 0xFFFF)) <= 0)
        e->filename[0] = 0;
    /* Bytes left unread (RT_F_ARGS_TRUNCATED): user space reads the rest from
     * /proc. Never a reason to drop the call (rule 3). */
    flags |= copy_argv(e, mm);
    if (!(flags & (RT_F_MAY_CREATE | RT_F_ARGS_TRUNCATED)))
        return 0; /* state, start, delete, kill, exec...: no container comes of it */
    /* Follow this runc from now on: its children, its exit. Any earlier entry (a
     * wrapper script that exec'd runc, a descendant of another runc) is replaced:
     * this process is now that runc. */
    struct rt_proc r = {};
    r.kind = RT_KIND_RUNC;
    r.start_ns = bpf_ktime_get_ns();
    if (procs.update(&tgid, &r))
        count(RT_C_PROCS_FULL);
    e->runc_id = runc_id;
    e->hdr.type = RT_EV_EXEC;
    e->hdr.pid = tgid;
    e->hdr.ktime_ns = r.start_ns;
    e->hdr.status = 0;
    e->hdr.flags = flags;
    e->hdr.init_pid = 0;
    e->hdr.mntns = e->hdr.pidns = e->hdr.netns = 0;
    /* At once, even for a `runc run`, which user space needs only when its init
     * starts: by then a detached run's runc has exited, and under load a
     * foreground one's may have too, taking its cwd (the bundle, without
     * --bundle) and its parent along. (Tried: 2 of 400 runs at concurrency 8
     * lost their bundle.) */
    send_exec_record(e);
    return 0;
}

/* ------------------------------------------------------------- runc's descendants */

/* Follow runc's children, grandchildren and great-grandchildren: the container's
 * init is among them. Knowing them lets the kernel keep their exit status in
 * recent_exits, for an init that ends before user space has read its PID.
 *
 * The tracepoint runs in the parent and its child_pid may be a new *thread* (the
 * arguments do not say). Thread entries are harmless and are removed when the
 * thread exits (see sched_process_exit). */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 tgid = current_tgid();
    struct rt_proc *p = procs.lookup(&tgid);
    if (!p || p->depth >= RT_MAX_DEPTH)
        return 0;
    struct rt_proc child = {};
    child.kind = RT_KIND_DESC;
    child.depth = p->depth + 1;
    child.runc = p->kind == RT_KIND_RUNC ? tgid : p->runc;
    child.start_ns = bpf_ktime_get_ns();
    u32 pid = args->child_pid;
    if (procs.update(&pid, &child))
        count(RT_C_PROCS_FULL);
    return 0;
}

/* ----------------------------------------------------------- how a process ends */

/* The wait(2) status of the exiting process, as its parent will get it: what
 * wait_task_zombie() reports once the group is exiting (SIGNAL_GROUP_EXIT), its
 * signal->group_exit_code. That is exit_group's code << 8, or the signal that
 * ended the group (the one sent, SIGTERM say, not the SIGKILL each thread then
 * gets), | 0x80 for a core dump. At the last thread's exit (group_dead) the flag
 * is always set: since 5.19 the last thread to start exiting sets it, with its
 * own code, if nothing did before (synchronize_group_exit), and group_dead came
 * to this tracepoint later than that. On an older kernel, where the leader's
 * exit stands in for the last thread's, a leader that called plain exit(2)
 * while other threads run on has not set it: the status is then unknown (its
 * threads may still end the process otherwise). Sets RT_F_STATUS_KNOWN in *flags
 * if read. */
static __always_inline u32 exit_status(u32 *flags)
{
    u64 signal = read_kernel_u64(bpf_get_current_task() + RT_OFF_TASK_SIGNAL);
    u32 sflags = 0;
    s32 code = 0;
    if (!signal || bpf_probe_read_kernel(&sflags, sizeof(sflags), (void *)(signal + RT_OFF_SIGNAL_FLAGS)) ||
        !(sflags & RT_SIGNAL_GROUP_EXIT))
        return 0;
    if (bpf_probe_read_kernel(&code, sizeof(code), (void *)(signal + RT_OFF_SIGNAL_GROUP_EXIT_CODE)))
        return 0;
    *flags |= RT_F_STATUS_KNOWN;
    return (u32)code;
}

/* ------------------------------------------------- when a watched exit is sent
 *
 * sched_process_exit fires at the start of the exit, before the process is a
 * zombie: until exit_notify(), /proc still shows it running and `runc delete`
 * refuses the container. A REMOVE sent then would have user space poll for the
 * zombie (it did: a wake-up or two per container). So the exit is only noted
 * there (exit_ns, status), and sent from the first of:
 *
 * - signal_generate of the parent's SIGCHLD, which exit_notify() sends to the
 *   whole parent process just after it made the process a zombie, in the
 *   exiting process's context: SIGCHLD, to a thread group, with si_code
 *   CLD_EXITED, CLD_KILLED or CLD_DUMPED (a stop or continue has other codes;
 *   SIGSEGV, SIGIO... share the numbers, hence the signal). The same process
 *   also sends one on behalf of zombie children it hands to a reaper, a moment
 *   *before* it is a zombie itself: so user space still checks, and in that
 *   rare case waits for the zombie as it always did (bcc/exits.py, _Ending).
 * - sched_process_free, for a parent that ignores SIGCHLD (no notification;
 *   the process is reaped at once). That comes an RCU grace period after the
 *   reap, which has freed the PID: a new process may take it meanwhile; user
 *   space finds this entry in its way, and clears it (bcc/exits.py, ExitWatch.watch).
 *
 * Not covered: an exit signal of 0 (never used for a container's init: runc
 * clones it with SIGCHLD) leaves a zombie with no notification, reported when it
 * is reaped; and a free that the kernel skips because another BPF program was
 * running on that CPU (only for a parent that ignores SIGCHLD) is reported only
 * by a resync.
 */
#define RT_CLD_EXITED 1
#define RT_CLD_DUMPED 3
#define RT_SIGCHLD 17 /* on every architecture BCC supports */

static __always_inline void send_watched_exit(u32 tgid)
{
    struct rt_watch *c = containers.lookup(&tgid);
    if (!c || !c->exit_ns)
        return; /* not watched, or not exited yet */
    u64 when = c->exit_ns;
    u32 status = c->status, flags = c->flags | RT_F_ENDED;
    /* the handshake: whoever deletes the entry reports the exit */
    if (containers.delete(&tgid) == 0)
        send_event(RT_EV_CONTAINER_EXIT, tgid, when, status, flags, 0, RT_RB_NOW);
}

TRACEPOINT_PROBE(sched, sched_process_free)
{
    send_watched_exit(args->pid);
    return 0;
}

/* A parent's SIGCHLD for a child that exited, was killed or dumped core: see
 * "when a watched exit is sent". (Whatever the result: a SIGCHLD at its default
 * action is "ignored".) */
TRACEPOINT_PROBE(signal, signal_generate)
{
    if (args->sig == RT_SIGCHLD && args->group && args->code >= RT_CLD_EXITED && args->code <= RT_CLD_DUMPED)
        send_watched_exit(current_tgid());
    return 0;
}

/* sched_process_exit runs once per exiting thread. A process has ended when its
 * last thread exits ("group_dead"), which need not be the leader (Go programs like
 * runc often end on another thread); bpf_get_current_pid_tgid still names the
 * process. Kernels whose tracepoint lacks group_dead (before 6.x) fall back to
 * the leader's exit, which is early for a leader that exits before its threads. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    if (tid != tgid)
        procs.delete(&tid); /* a thread that fork tracking took for a process */
#ifdef RT_HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if (tid != tgid)
        return 0;
#endif
    /* Each map is tested on its own, and the status read in whichever block comes
     * first: clang turns "!p && !c" into an OR of the two pointers, which the
     * verifier rejects. Most exits are in neither map, and read nothing. */
    u64 now = 0;
    u32 flags = 0, status = 0;
    struct rt_proc *p = procs.lookup(&tgid);
    if (p) {
        now = bpf_ktime_get_ns();
        status = exit_status(&flags);
        u32 kind = p->kind, init_pid = p->init_pid, init_sent = p->init_sent;
        if (kind == RT_KIND_DESC) {
            struct rt_recent_exit r = {};
            r.start_ns = p->start_ns;
            r.exit_ns = now;
            r.status = status;
            r.flags = flags;
            /* Before the delete from containers below: the handshake's order. */
            recent_exits.update(&tgid, &r);
        }
        procs.delete(&tgid);
        /* A runc whose init exec record is ahead of this one in the ring buffer:
         * user space resolves the call from that record (or has no call for it),
         * so this exit changes nothing it must act on now, and does not wake it
         * (one wake-up in four per `runc run`). */
        if (kind == RT_KIND_RUNC)
            send_event(RT_EV_RUNC_EXIT, tgid, now, status, flags, init_pid,
                       init_sent ? RT_RB_LATER : RT_RB_NOW);
    }
    struct rt_watch *c = containers.lookup(&tgid);
    if (c) {
        if (!now) {
            now = bpf_ktime_get_ns();
            status = exit_status(&flags);
        }
        /* sent when it is a zombie: see "when a watched exit is sent" */
        c->status = status;
        c->flags = flags;
        c->exit_ns = now;
    }
    return 0;
}
