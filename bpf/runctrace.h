/* runctrace.h: what the BPF program (runctrace.bpf.c) and Python share.
 *
 * Python reads the RT_* "#define NAME number" lines of this file at import time
 * (runctrace.backends.bcc.records.C), so every size and code below has one source. The two
 * structs sent through the ring buffer, struct rt_event and struct rt_exec_event,
 * are mirrored with ctypes in one place: runctrace/backends/bcc/records.py (RtEvent, RtExecEvent).
 * The program refuses to compile if the mirror's size disagrees (see the
 * _Static_assert in runctrace.bpf.c); records.py's struct formats, which decode the
 * records, are checked against the mirror when it is imported.
 *
 * Keep this file plain C with fixed-width types and no kernel headers: the headers
 * on this machine belong to another kernel than the one running (see PLATFORM.md).
 */
#ifndef RUNCTRACE_H
#define RUNCTRACE_H

/* Capture limits. RT_ARGS_SIZE must be a power of two (it is used as a mask). */
#define RT_PATH_MAX 256   /* bytes of the execve filename kept (for display only) */
#define RT_ARGS_SIZE 8192 /* bytes of argv kept, NUL-separated, like /proc/PID/cmdline */
#define RT_ARG_MAX 1024   /* bytes read per argument */
#define RT_MAX_ARGS 64    /* arguments read; runc calls have about 15 */
#define RT_MAX_RUNC_FILES 64 /* entries of the "runc_files" map: watched runc inodes */

/* How far below a runc process its descendants are followed (see "procs" in
 * runctrace.bpf.c). runc 1.1: runc -> runc init [0:PARENT] -> [1:CHILD] ->
 * [2:INIT], the container's init, at depth 3. */
#define RT_MAX_DEPTH 3

/* rt_event.type */
#define RT_EV_EXEC 1           /* a watched runc was exec'd: struct rt_exec_event */
#define RT_EV_RUNC_EXIT 2      /* that runc process ended */
#define RT_EV_CONTAINER_EXIT 3 /* a PID that user space put in "containers" ended */
#define RT_EV_INIT_EXEC 4      /* pid: a runc process; init_pid: its container init, exec'ing the program:
                                * struct rt_exec_event, with the program's argv */
#define RT_EV_ORPHAN_INIT_EXEC 5 /* pid: a container init exec'ing the program after its runc ended
                                  * (a create's init, at `runc start`): struct rt_exec_event, as above */

/* rt_event.flags */
#define RT_F_UNVERIFIED 1      /* exec: its inode number matched on a filesystem where one number may name
                                * several files (btrfs subvolumes...): user space compares /proc/PID/exe */
#define RT_F_ARGS_TRUNCATED 2  /* exec, init execs: argv not read whole (too many, too long, unreadable) */
#define RT_F_STATUS_KNOWN 4    /* exits: rt_event.status holds a wait(2) status */
#define RT_F_MAY_CREATE 8      /* exec: an argument is "create", "run" or "restore" */
#define RT_F_ENDED 16          /* RT_EV_CONTAINER_EXIT: sent once the process was a zombie (or freed) */

/* rt_proc.kind */
#define RT_KIND_RUNC 1 /* a watched runc process */
#define RT_KIND_DESC 2 /* a descendant of one, at most RT_MAX_DEPTH below */

/* rt_proc.flags */
#define RT_P_INIT_NAMED 1 /* a descendant at RT_MAX_DEPTH named itself RT_INIT_COMM */
#define RT_P_STARTED 2    /* that init has exec'd its program: a later rename is the program's own */

/* comm of runc 1.1's container init until it execs the container's program
 * (set by runc's nsexec with PR_SET_NAME). */
#define RT_INIT_COMM "runc:[2:INIT]"

/* Indexes of the "counters" array: things that were dropped in the kernel. */
#define RT_C_RINGBUF_FULL 0 /* a record did not fit in the ring buffer */
#define RT_C_PROCS_FULL 1   /* the procs map was full: a runc or descendant went unfollowed */
#define RT_C_ANY 2          /* the sum of the above: user space reads this one after each wake-up */
#define RT_C_COUNT 3

/* Header of every ring buffer record. */
struct rt_event {
    __u32 type;     /* RT_EV_* */
    __u32 pid;      /* process ID (tgid) in the initial PID namespace */
    __u64 ktime_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u32 status;   /* exits: wait(2) status, if flags & RT_F_STATUS_KNOWN */
    __u32 flags;    /* RT_F_* */
    __u32 init_pid; /* RT_EV_RUNC_EXIT, RT_EV_INIT_EXEC: the container init this runc started, 0 if none seen */
    /* RT_EV_INIT_EXEC: the init's mount, PID and network namespaces (inode numbers,
     * as /proc/PID/ns/ shows them; 0 if unread), read as it execs: an init that
     * ends in a millisecond is often gone before user space could read /proc */
    __u32 mntns;
    __u32 pidns;
    __u32 netns;
};

/* RT_EV_EXEC, RT_EV_INIT_EXEC, RT_EV_ORPHAN_INIT_EXEC: an exec with the argv the
 * kernel held at it. Only the first offsetof(args) + args_size bytes are sent. */
struct rt_exec_event {
    struct rt_event hdr;
    __u32 argc;      /* arguments captured: whole ones only */
    __u32 args_size; /* bytes used in args, < RT_ARGS_SIZE */
    __u32 runc_id;   /* RT_EV_EXEC: which watched binary ran: rt_runc_file.id of its inode; else 0 */
    char filename[RT_PATH_MAX]; /* RT_EV_EXEC: the exec's filename as the caller gave it (display
                                 * only); empty for an init's */
    char args[RT_ARGS_SIZE];
};

/* Value of the "containers" map: a watched PID, and its exit once it happened. */
struct rt_watch {
    __u64 exit_ns;     /* bpf_ktime_get_ns() when its last thread exited; 0 while it runs */
    __u32 status;      /* wait(2) status at that exit, if flags & RT_F_STATUS_KNOWN */
    __u32 flags;
};

/* Value of the "procs" map. */
struct rt_proc {
    __u32 kind;     /* RT_KIND_* */
    __u32 depth;    /* 0 for runc itself */
    __u32 flags;    /* RT_P_* */
    __u32 runc;     /* RT_KIND_DESC: the tgid of the runc process it descends from */
    __u32 init_pid; /* RT_KIND_RUNC: its container's init, once seen exec'ing (0: not yet) */
    __u32 init_sent; /* RT_KIND_RUNC: 1 once its RT_EV_INIT_EXEC record is in the ring buffer */
    __u64 start_ns; /* bpf_ktime_get_ns() at its fork (or exec, for runc) */
};

/* Value of the "recent_exits" map: how a runc descendant ended. */
struct rt_recent_exit {
    __u64 start_ns; /* as rt_proc.start_ns */
    __u64 exit_ns;
    __u32 status;   /* wait(2) status, if flags & RT_F_STATUS_KNOWN */
    __u32 flags;
};

/* Key of the "runc_files" map: a file as the kernel names it. dev is the
 * superblock's s_dev, in the kernel's own encoding (MKDEV: major << 20 | minor,
 * not the encoding stat(2) returns). */
struct rt_file_id {
    __u64 ino;
    __u32 dev;
    __u32 pad; /* zero: the whole struct is the hash key */
};

/* Value of the "runc_files" map. */
struct rt_runc_file {
    __u32 id;    /* user space's number for the binary, > 0; sent as rt_exec_event.runc_id */
    __u32 flags; /* RT_F_UNVERIFIED or 0: added to the exec record's flags */
};

#endif /* RUNCTRACE_H */
