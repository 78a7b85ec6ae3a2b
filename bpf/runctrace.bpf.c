/* runctrace.bpf.c: see runc execute, follow its children, report exits.
 *
 * Compiled at run time by BCC (runctrace/bcc.py), which inlines runctrace.h here
 * (`runctrace doctor --print-bpf` shows the exact text and flags).
 *
 * Rules this program follows, and why:
 *
 * 1. Tracepoints only. The kernel this runs on has no kprobes (CONFIG_KPROBES off).
 * 2. Read only tracepoint arguments and helper results (bpf_get_current_pid_tgid,
 *    bpf_ktime_get_ns, bpf_probe_read_user*). Never a kernel struct field: the only
 *    headers on the machine are from another kernel version, so any offsetof() into
 *    task_struct would silently read garbage. BCC builds each tracepoint's "args"
 *    struct from tracefs' format files at run time, which is always right.
 * 3. Filter in the kernel. Every exec, fork, exit and signal on the host passes
 *    through here; only these cross to user space:
 *      - RT_EV_EXEC: a watched runc binary was executed (with its argv);
 *      - RT_EV_INIT_EXEC: that runc's container init is starting its program;
 *      - RT_EV_RUNC_EXIT: such a runc process ended (with its exit status);
 *      - RT_EV_CONTAINER_EXIT: a PID user space asked about ended (the
 *        container's init), with its exit status.
 *    A runc exec none of whose arguments is "create", "run" or "restore" (state,
 *    start, delete, kill, exec, init...) makes no container: it is not sent, and
 *    not followed. On a containerd host that is most runc calls. A false match
 *    ("--root run") costs user space a parse; the command word itself is always
 *    an argument of its own, so a call that makes a container is never dropped
 *    (argv that could not be read whole is sent, marked RT_F_ARGS_TRUNCATED).
 *    An exec storm of unrelated programs costs a string read and a few hash
 *    lookups per process in the kernel (measured: 2.3 us of BPF time per
 *    fork+exec+exit of /bin/true, ~0.3% of that cycle), and nothing in user space.
 *
 * Maps:
 *   runc_paths   filled by user space: every path of every runc binary to watch.
 *   exec_stash   argv captured at sys_enter_execve, sent only when the exec succeeds.
 *   procs        runc processes and their descendants down to RT_MAX_DEPTH, with
 *                what is known of how each is ending. Kernel-owned.
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

/* Signals, by number: kernel headers are not used for these (rule 2), and the
 * numbers are the same on every Linux architecture BCC supports. */
#define RT_SIGKILL 9
/* signal_generate's "result": TRACE_SIGNAL_DELIVERED. Others (ignored, already
 * pending, overflow) mean this signal will not be the one that ends the process. */
#define RT_SIGNAL_DELIVERED 0

/* User space compiles with -DRT_PY_EXEC_EVENT_SIZE=sizeof(its ctypes mirror) */
_Static_assert(sizeof(struct rt_exec_event) == RT_PY_EXEC_EVENT_SIZE,
               "runctrace/bcc.py's RtExecEvent does not match struct rt_exec_event");
_Static_assert((RT_ARGS_SIZE & (RT_ARGS_SIZE - 1)) == 0, "RT_ARGS_SIZE must be a power of two");

/* 512 pages = 2 MiB: ~3000 typical runc execs (~600 bytes each) before the reader
 * must catch up. A full buffer drops records; each drop is counted. */
BPF_RINGBUF_OUTPUT(events, 512);

BPF_HASH(runc_paths, struct rt_path, u32, 64);
/* Keyed by tgid, not thread ID: if a non-leader thread execs, it takes over the
 * tgid's PID, so the key survives the exec. LRU: an entry left behind by an exec
 * that never returned (the process was killed inside execve) ages out. */
BPF_TABLE("lru_hash", u32, struct rt_exec_event, exec_stash, 256);
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

/* A header-only record: RT_EV_RUNC_EXIT, RT_EV_CONTAINER_EXIT, RT_EV_INIT_EXEC.
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

/* ------------------------------------------------------------------ exec of runc */

/* True if the filename (len bytes with its NUL) ends in "runc": runc, docker-runc,
 * ./runc, a symlink named runc... These are not known runc paths, but may be a
 * watched runc reached another way (a relative path, a symlink no one listed);
 * user space then compares the file's inode with the watched binaries'. */
static __always_inline bool ends_in_runc(const char *name, int len)
{
    if (len < 5)
        return false;
    u32 i = (u32)(len - 5) & (RT_PATH_MAX - 1);
    /* i + 3 < RT_PATH_MAX because len <= RT_PATH_MAX; the masks tell the verifier. */
    return name[i] == 'r' && name[(i + 1) & (RT_PATH_MAX - 1)] == 'u' &&
           name[(i + 2) & (RT_PATH_MAX - 1)] == 'n' && name[(i + 3) & (RT_PATH_MAX - 1)] == 'c';
}

/* A descendant of runc is exec'ing. If it is runc's container init (at its depth,
 * and still named by runc's nsexec), the container is starting its program: tell
 * user space now (RT_EV_INIT_EXEC), with the PID, so a `runc run` is resolved
 * without waiting for runc's state.json, and note it in runc's entry, for its exit
 * record. The comm is a helper result (bpf_get_current_comm), not a struct read. */
static __always_inline void note_init_exec(const struct rt_proc *p, u32 tgid)
{
    const char want[] = RT_INIT_COMM;
    char comm[16] = {};
    if (p->kind != RT_KIND_DESC || p->depth != RT_MAX_DEPTH)
        return;
    bpf_get_current_comm(comm, sizeof(comm));
    for (int i = 0; i < sizeof(want); i++)
        if (comm[i] != want[i])
            return;
    u32 runc = p->runc;
    struct rt_proc *r = procs.lookup(&runc);
    /* p->runc may name a runc that has exited (a create's init waits for `runc
     * start`) and whose PID a new runc has since taken: that one started after
     * this descendant was forked, so it is not its runc. */
    if (r && r->kind == RT_KIND_RUNC && !r->init_pid && r->start_ns <= p->start_ns) {
        r->init_pid = tgid;
        if (send_event(RT_EV_INIT_EXEC, runc, bpf_ktime_get_ns(), 0, 0, tgid, RT_RB_NOW) == 0)
            r->init_sent = 1;
    }
}

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

/* sys_enter_execve: if the file is a runc, copy argv into exec_stash.
 *
 * argv is read now because after a successful exec the caller's memory is gone,
 * and a runc that exits at once must still be seen with its arguments. It is sent
 * only at sys_exit_execve when the exec succeeded: a PATH search (execvp tries
 * /usr/local/sbin/runc, /usr/local/bin/runc, ... in turn) then costs user space
 * nothing for the failed attempts.
 *
 * Every exec also passes here first: a runc descendant's exec may be its
 * container's init starting (note_init_exec). */
static __always_inline int stash_exec(const char *filename, const char *const *argv)
{
    u32 zero = 0;
    u32 tgid = current_tgid();
    struct rt_proc *p = procs.lookup(&tgid);
    if (p)
        note_init_exec(p, tgid);

    struct rt_exec_event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    /* bpf_probe_read_user_str does not clear the bytes after the NUL, and the whole
     * 256 bytes are the hash key: clear them first. */
    __builtin_memset(e->filename, 0, sizeof(e->filename));
    int len = bpf_probe_read_user_str(e->filename, sizeof(e->filename), filename);
    if (len <= 0)
        return 0;
    u32 flags = 0;
    if (!runc_paths.lookup((struct rt_path *)e->filename)) {
        if (!ends_in_runc(e->filename, len))
            return 0; /* the common case: not runc, nothing more to do */
        flags |= RT_F_UNVERIFIED;
    }

    /* Copy the filename (and stale bytes after it, harmless) into the stash, then
     * fill argv in place. */
    if (exec_stash.update(&tgid, e)) {
        count(RT_C_STASH_FULL);
        return 0;
    }
    struct rt_exec_event *s = exec_stash.lookup(&tgid);
    if (!s)
        return 0;

    u32 off = 0, argc = 0;
    for (int i = 0; i < RT_MAX_ARGS; i++) {
        const char *arg = 0;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i])) {
            /* Unreadable here (BPF cannot fault a page in): user space reads the
             * rest from /proc. Never a reason to drop the call (rule 3). */
            flags |= RT_F_ARGS_TRUNCATED;
            goto done;
        }
        if (!arg)
            goto done;
        /* Keep off + RT_ARG_MAX < RT_ARGS_SIZE so the verifier can bound the write
         * and args_size stays below RT_ARGS_SIZE. */
        if (off > RT_ARGS_SIZE - RT_ARG_MAX - 1) {
            flags |= RT_F_ARGS_TRUNCATED;
            goto done;
        }
        int n = bpf_probe_read_user_str(&s->args[off], RT_ARG_MAX, arg);
        if (n <= 0) {
            flags |= RT_F_ARGS_TRUNCATED; /* as above */
            goto done;
        }
        if (n == RT_ARG_MAX)
            flags |= RT_F_ARGS_TRUNCATED; /* this argument was cut (or exactly fit) */
        if (creates_word(&s->args[off], n))
            flags |= RT_F_MAY_CREATE;
        off += n;
        argc++;
    }
    /* Still more arguments after RT_MAX_ARGS? */
    {
        const char *arg = 0;
        if (!bpf_probe_read_user(&arg, sizeof(arg), &argv[RT_MAX_ARGS]) && arg)
            flags |= RT_F_ARGS_TRUNCATED;
    }
done:
    s->argc = argc;
    s->args_size = off;
    s->hdr.type = RT_EV_EXEC;
    s->hdr.pid = tgid;
    s->hdr.status = 0;
    s->hdr.flags = flags;
    s->hdr.init_pid = 0;
    return 0;
}

/* sys_exit_execve: send the stashed exec if it succeeded and may make a container
 * (with argv cut short, it may); forget it either way. */
static __always_inline int finish_exec(long ret)
{
    u32 tgid = current_tgid();
    struct rt_exec_event *s = exec_stash.lookup(&tgid);
    if (!s)
        return 0;
    if (ret == 0 && s->hdr.flags & (RT_F_MAY_CREATE | RT_F_ARGS_TRUNCATED)) {
        /* Follow this runc from now on: its chdir, its children, its exit. Any
         * earlier entry (a wrapper script that exec'd runc, a descendant of another
         * runc) is replaced: this process is now that runc. */
        struct rt_proc p = {};
        p.kind = RT_KIND_RUNC;
        p.start_ns = bpf_ktime_get_ns();
        if (procs.update(&tgid, &p))
            count(RT_C_PROCS_FULL);
        s->hdr.ktime_ns = p.start_ns;
        u32 size = offsetof(struct rt_exec_event, args) + (s->args_size & (RT_ARGS_SIZE - 1));
        if (size > sizeof(*s)) /* never true; bounds the size for the verifier */
            size = sizeof(*s);
        /* At once, even for a `runc run`, which user space needs only when its
         * init starts: by then a detached run's runc has exited, and under load
         * a foreground one's may have too, taking its cwd (the bundle, without
         * --bundle) and its parent along. (Tried: 2 of 400 runs at concurrency 8
         * lost their bundle.) */
        if (events.ringbuf_output(s, size, RT_RB_NOW))
            count(RT_C_RINGBUF_FULL);
    }
    exec_stash.delete(&tgid);
    return 0;
}

/* Not attached: sys_enter_execveat. A caller that runs runc by execveat with an
 * absolute path is unheard of (fexecve passes an empty path, which could not be
 * matched anyway), and each attached tracepoint costs ~40 ms at detach time, when
 * close() must be quick (see BccNotifier._release). runc's own fexecve of its memfd
 * copy (runc init) goes through execveat, and must not match in any case. */
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return stash_exec(args->filename, args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    return finish_exec(args->ret);
}

/* runc chdirs into --bundle early (runc 1.1's setupSpec, with Go's os.Chdir, i.e.
 * chdir(2); fchdir is not watched, for the reason above). User space reads runc's
 * cwd from /proc when the exec arrives, and must know whether that read may have
 * come after the chdir. The flag is set at syscall entry, before the chdir. */
TRACEPOINT_PROBE(syscalls, sys_enter_chdir)
{
    u32 tgid = current_tgid();
    struct rt_proc *p = procs.lookup(&tgid);
    if (p && p->kind == RT_KIND_RUNC)
        p->flags |= RT_P_CHDIR;
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

/* The exit code is the argument of exit_group, in the process's own context. A
 * process ended by a signal never calls it. Recorded for runc processes, their
 * descendants and watched containers only. */
TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
    u32 tgid = current_tgid();
    struct rt_proc *p = procs.lookup(&tgid);
    if (p) {
        p->st.code = args->error_code;
        p->st.how = RT_HOW_EXIT_GROUP;
    }
    struct rt_watch *c = containers.lookup(&tgid);
    if (c) {
        c->st.code = args->error_code;
        c->st.how = RT_HOW_EXIT_GROUP;
    }
    return 0;
}

static __always_inline void note_signal(u32 pid, u32 sig, bool only_if_none)
{
    struct rt_proc *p = procs.lookup(&pid);
    if (p && (!only_if_none || !p->st.sig))
        p->st.sig = sig;
    struct rt_watch *c = containers.lookup(&pid);
    if (c && (!only_if_none || !c->st.sig))
        c->st.sig = sig;
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
 *   rare case waits for the zombie as it always did (bcc.py, _Ending).
 * - sched_process_free, for a parent that ignores SIGCHLD (no notification;
 *   the process is reaped at once). That comes an RCU grace period after the
 *   reap, which has freed the PID: a new process may take it meanwhile; user
 *   space finds this entry in its way, and clears it (bcc.py, _watch).
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

/* Which signal killed a process is not in any exit tracepoint, so it is inferred
 * from the last signal that reached it:
 *
 * - signal_generate runs in the *sender* and names the target PID and the signal,
 *   and whether it was queued. kill(PID, SIGTERM) to a process with no handler
 *   turns, inside the kernel, into a group exit that each thread then sees as
 *   SIGKILL; only here is SIGTERM still visible. A signal the target ignores (e.g.
 *   SIGTERM to a container's init, PID 1 of its namespace, with no handler) is
 *   reported with a result other than "delivered" and is skipped.
 * - signal_deliver runs in the *target* when it takes a signal. It covers what
 *   generate keyed by a thread ID cannot (a fault in a non-leader thread). The
 *   SIGKILL that stands for "the group is already exiting" does not overwrite an
 *   earlier, more precise signal.
 *
 * If the process then calls exit_group, its exit code wins (see status_of). Known
 * gap: a fatal default-action signal sent with tgkill to a non-leader thread,
 * after some other signal reached the process, is reported as that other signal. */
TRACEPOINT_PROBE(signal, signal_generate)
{
    /* Whatever the result: a parent's SIGCHLD at its default action is "ignored". */
    if (args->sig == RT_SIGCHLD && args->group && args->code >= RT_CLD_EXITED && args->code <= RT_CLD_DUMPED)
        send_watched_exit(current_tgid());
    if (args->result != RT_SIGNAL_DELIVERED)
        return 0;
    note_signal(args->pid, args->sig, false);
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    note_signal(current_tgid(), args->sig, args->sig == RT_SIGKILL);
    return 0;
}

/* A wait(2)-style status, and RT_F_STATUS_KNOWN in *flags when there is one. */
static __always_inline u32 status_of(const struct rt_exit *st, u32 *flags)
{
    if (st->how == RT_HOW_EXIT_GROUP) {
        *flags |= RT_F_STATUS_KNOWN;
        return ((u32)st->code & 0xff) << 8;
    }
    if (st->sig) {
        *flags |= RT_F_STATUS_KNOWN;
        return st->sig & 0x7f;
    }
    return 0; /* e.g. the last thread ended with exit(2), not exit_group */
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
    /* An exec stashed but never finished (killed inside execve). */
    exec_stash.delete(&tgid);

    struct rt_proc *p = procs.lookup(&tgid);
    struct rt_watch *c = containers.lookup(&tgid);
    /* procs' record started earlier (at fork) than containers' (when user space
     * found the PID), so it has seen every signal and exit_group when present.
     * (Written as nested tests: clang turns "!p && !c" into an OR of the two
     * pointers, which the verifier rejects.) */
    struct rt_exit st = {};
    if (p) {
        st = p->st;
    } else {
        if (!c)
            return 0; /* the common case */
        st = c->st;
    }
    u64 now = bpf_ktime_get_ns();
    u32 flags = 0;
    u32 status = status_of(&st, &flags);

    if (p) {
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
    if (c) {
        /* sent when it is a zombie: see "when a watched exit is sent" */
        c->status = status;
        c->flags = flags;
        c->exit_ns = now;
    }
    return 0;
}
