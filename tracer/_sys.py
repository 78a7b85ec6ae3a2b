"""Every Linux syscall binding runctrace uses, in one place.

The standard library covers epoll, eventfd, pidfd_open and netlink sockets; the rest
(fanotify, inotify and the socket-filter ``setsockopt``) is bound here with cffi in
ABI mode, so nothing needs compiling at install time.

Layout, in the spirit of inotify_simple:

* :func:`_check` is the only place that looks at a syscall's ``-1``, retries ``EINTR``
  and raises ``OSError(errno, strerror)``; except for :class:`Reader`, whose
  ``EAGAIN`` is an answer ("nothing queued"), not an error.
* Decoding the kernel's byte records (:func:`decode_fanotify`, :func:`decode_inotify`,
  :func:`decode_proc_events`) are pure functions over ``bytes``: the unit tests feed
  them hand-built records with no syscall at all.
"""

from __future__ import annotations

import enum
import errno
import os
import socket
import struct
from typing import Iterator, NamedTuple, Optional

import cffi

_ffi = cffi.FFI()
_ffi.cdef(
    """
    int fanotify_init(unsigned int flags, unsigned int event_f_flags);
    int fanotify_mark(int fanotify_fd, unsigned int flags, uint64_t mask,
                      int dirfd, const char *pathname);
    int inotify_init1(int flags);
    int inotify_add_watch(int fd, const char *pathname, uint32_t mask);
    int inotify_rm_watch(int fd, int wd);

    struct sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
    struct sock_fprog { unsigned short len; struct sock_filter *filter; };
    int setsockopt(int sockfd, int level, int optname, const void *optval,
                   uint32_t optlen);
    long syscall(long number, ...);
    ssize_t read(int fd, void *buf, size_t count);

    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr {
        void *msg_name; uint32_t msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
        void *msg_control; size_t msg_controllen; int msg_flags;
    };
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
    struct timespec { long tv_sec; long tv_nsec; };
    int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags,
                 struct timespec *timeout);
    """
)
_libc = _ffi.dlopen(None)


def _check(ret: int) -> int:
    """Raise ``OSError`` for a ``-1`` return; the only place that reads ``errno``."""
    if ret == -1:
        err = _ffi.errno
        raise OSError(err, os.strerror(err))
    return ret


def _retry(call, *args) -> int:
    while True:
        try:
            return _check(call(*args))
        except InterruptedError:
            continue


# --------------------------------------------------------------------------- fanotify


class FanInit(enum.IntFlag):
    CLOEXEC = 0x1
    NONBLOCK = 0x2
    CLASS_NOTIF = 0x0
    CLASS_CONTENT = 0x4
    CLASS_PRE_CONTENT = 0x8
    UNLIMITED_QUEUE = 0x10
    UNLIMITED_MARKS = 0x20
    REPORT_FID = 0x200


class FanMark(enum.IntFlag):
    ADD = 0x1
    REMOVE = 0x2
    DONT_FOLLOW = 0x4
    ONLYDIR = 0x8
    FLUSH = 0x80


class FanEvent(enum.IntFlag):
    ONDIR = 0x40000000
    EVENT_ON_CHILD = 0x08000000
    ACCESS = 0x1
    MODIFY = 0x2
    CLOSE_WRITE = 0x8
    OPEN = 0x20
    Q_OVERFLOW = 0x4000
    OPEN_PERM = 0x10000
    OPEN_EXEC = 0x1000
    OPEN_EXEC_PERM = 0x40000


FAN_NOFD = -1
# plain ints for the event loop (see PROC_EXEC below)
FAN_Q_OVERFLOW, FAN_OPEN_EXEC = int(FanEvent.Q_OVERFLOW), int(FanEvent.OPEN_EXEC)
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100

# struct fanotify_event_metadata { __u32 event_len; __u8 vers; __u8 reserved;
#   __u16 metadata_len; __aligned_u64 mask; __s32 fd; __s32 pid; }
_FAN_META = struct.Struct("=IBBHQii")


# The decoded records are NamedTuples, not dataclasses: a burst of containers means
# thousands of them, and a tuple is several times cheaper to build than a frozen
# dataclass.
class FanotifyRecord(NamedTuple):
    mask: int
    fd: int
    pid: int


def fanotify_init(flags: int, event_f_flags: int) -> int:
    return _retry(_libc.fanotify_init, int(flags), int(event_f_flags))


def fanotify_mark(fd: int, flags: int, mask: int, path: str, dirfd: int = AT_FDCWD) -> None:
    _retry(_libc.fanotify_mark, fd, int(flags), int(mask), dirfd, os.fsencode(path))


class Reader:
    """Reads of one non-blocking fd into one reused buffer; ``None``, not an
    exception, when nothing is queued.

    The event loops look at their fds after every wake-up, and most of those
    looks find nothing. ``os.read`` and ``socket.recv_into`` raise
    BlockingIOError then, and CPython builds each one's message with strerror()
    and a locale decode (a few percent of the fanotify loop's perf samples in an
    exec storm; its CPU per process did not measurably change). Here the
    ``-1``/``EAGAIN`` is a return value, and the buffer is allocated once.
    """

    def __init__(self, fd: int, size: int = 64 * 1024) -> None:
        self.fd = fd
        self.buf = bytearray(size)
        self._cbuf = _ffi.from_buffer(self.buf)

    def _done(self, n: int) -> Optional[memoryview]:
        if n >= 0:
            return memoryview(self.buf)[:n]
        err = _ffi.errno
        if err in (errno.EAGAIN, errno.EWOULDBLOCK):
            return None
        raise OSError(err, os.strerror(err))

    def read(self) -> Optional[memoryview]:
        """One read(2): the bytes (a view of the buffer, valid until the next
        call), or None if nothing is queued."""
        while True:
            try:
                return self._done(_libc.read(self.fd, self._cbuf, len(self.buf)))
            except InterruptedError:
                continue

    def fanotify_records(self) -> Iterator[FanotifyRecord]:
        """Every record a fanotify fd has queued. Each open ``fd`` is the caller's to close."""
        return self._records(decode_fanotify)

    def inotify_records(self) -> Iterator["InotifyRecord"]:
        """Every record an inotify fd has queued."""
        return self._records(decode_inotify)

    def _records(self, decode):
        # one read's records at a time: each fanotify record holds an open fd
        while True:
            data = self.read()
            if data is None:
                return
            yield from decode(data)  # decoded whole (a list) before the next read
            # a read takes every whole record that fits (fanotify's are 24 bytes,
            # inotify's at most 272): one that left room for more got them all
            if len(data) < len(self.buf) - 4096:
                return


MSG_DONTWAIT = socket.MSG_DONTWAIT


class DatagramReader(Reader):
    """A :class:`Reader` of a datagram socket that takes up to ``batch`` queued
    datagrams in one recvmmsg(2).

    A batch shorter than ``batch`` took every datagram queued at that moment, so
    the caller goes back to epoll instead of asking once more only to hear
    EAGAIN: a level-triggered epoll reports whatever came since. That last empty
    read was one syscall and one pass through here per wake-up, and most
    wake-ups bring one datagram.
    """

    def __init__(self, fd: int, batch: int = 64, slot: int = 1024) -> None:
        super().__init__(fd, batch * slot)
        self.batch, self._slot = batch, slot
        # each datagram lands in its own ``slot`` bytes of the buffer (a connector
        # message is under 100 bytes; a longer datagram would be cut short)
        self._iov = _ffi.new("struct iovec[]", batch)
        self._msgs = _ffi.new("struct mmsghdr[]", batch)
        for i in range(batch):
            self._iov[i].iov_base = self._cbuf + i * slot
            self._iov[i].iov_len = slot
            self._msgs[i].msg_hdr.msg_iov = self._iov + i
            self._msgs[i].msg_hdr.msg_iovlen = 1

    def recv_batch(self) -> Optional[list[memoryview]]:
        """The queued datagrams, each a view of its slot (valid until the next
        call); None if nothing is queued. An error that comes after some
        datagrams (``ENOBUFS``) is kept by the kernel for the next call."""
        while True:
            try:
                n = _libc.recvmmsg(self.fd, self._msgs, self.batch, MSG_DONTWAIT, _ffi.NULL)
                if n < 0:
                    return self._done(n)  # None (EAGAIN), or it raises
                break
            except InterruptedError:
                continue
        view, slot, msgs = memoryview(self.buf), self._slot, self._msgs
        return [view[i * slot:i * slot + msgs[i].msg_len] for i in range(n)]


def decode_fanotify(buf: bytes) -> list[FanotifyRecord]:
    """Split a ``read()`` of a fanotify fd into records.

    Raises ``ValueError`` on a version the layout above does not describe, instead of
    misreading it. Every record whose ``fd`` is not ``FAN_NOFD`` holds an open file the
    caller must close.
    """
    out = []
    off = 0
    while off + _FAN_META.size <= len(buf):
        event_len, vers, _res, _meta_len, mask, fd, pid = _FAN_META.unpack_from(buf, off)
        if vers != FANOTIFY_METADATA_VERSION:
            raise ValueError(f"fanotify metadata version {vers}, expected {FANOTIFY_METADATA_VERSION}")
        if event_len < _FAN_META.size or off + event_len > len(buf):
            raise ValueError(f"truncated fanotify record (event_len={event_len})")
        out.append(FanotifyRecord(mask, fd, pid))
        off += event_len
    return out


# --------------------------------------------------------------------------- inotify


class In(enum.IntFlag):
    CLOSE_WRITE = 0x8
    MOVED_FROM = 0x40
    MOVED_TO = 0x80
    CREATE = 0x100
    DELETE = 0x200
    DELETE_SELF = 0x400
    MOVE_SELF = 0x800
    ATTRIB = 0x4
    UNMOUNT = 0x2000
    Q_OVERFLOW = 0x4000
    IGNORED = 0x8000
    ONLYDIR = 0x1000000
    DONT_FOLLOW = 0x2000000
    ISDIR = 0x40000000


IN_Q_OVERFLOW, IN_IGNORED = int(In.Q_OVERFLOW), int(In.IGNORED)
IN_CREATE_OR_MOVED_TO = int(In.CREATE | In.MOVED_TO)
IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK
_IN_EVENT = struct.Struct("=iIII")


class InotifyRecord(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: str


def inotify_init1(flags: int) -> int:
    return _retry(_libc.inotify_init1, flags)


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _retry(_libc.inotify_add_watch, fd, os.fsencode(path), int(mask))


def inotify_rm_watch(fd: int, wd: int) -> None:
    try:
        _retry(_libc.inotify_rm_watch, fd, wd)
    except OSError as err:  # the kernel already dropped it (directory removed)
        if err.errno != errno.EINVAL:
            raise


def decode_inotify(buf: bytes | memoryview) -> list[InotifyRecord]:
    out = []
    off = 0
    while off + _IN_EVENT.size <= len(buf):
        wd, mask, cookie, name_len = _IN_EVENT.unpack_from(buf, off)
        off += _IN_EVENT.size
        raw = bytes(buf[off : off + name_len])  # buf may be a memoryview (Reader)
        off += name_len
        out.append(InotifyRecord(wd, mask, cookie, os.fsdecode(raw.split(b"\0", 1)[0])))
    return out


# --------------------------------------------------------------------------- bpf(2)

# bpf(2) has no libc wrapper: its syscall number, per architecture.
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "ppc64": 361, "s390x": 351}
BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2


def bpf_map_create_probe() -> None:
    """Create (and close) a one-entry array map: the smallest real use of bpf(2).

    Raises OSError (ENOSYS: no CONFIG_BPF_SYSCALL; EPERM: no CAP_BPF/CAP_SYS_ADMIN).
    Returns quietly on an architecture whose syscall number is not known here.
    """
    import platform

    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        return
    attr = _ffi.new("uint32_t[32]")  # union bpf_attr (128 bytes); unused fields must be zero
    attr[0:4] = [BPF_MAP_TYPE_ARRAY, 4, 4, 1]  # map_type, key_size, value_size, max_entries
    fd = _check(_libc.syscall(_ffi.cast("long", nr), _ffi.cast("long", BPF_MAP_CREATE),
                              _ffi.cast("void *", attr), _ffi.cast("long", _ffi.sizeof(attr))))
    os.close(fd)


# ------------------------------------------------------- netlink process-events connector

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3


class ProcWhat(enum.IntFlag):
    NONE = 0
    FORK = 0x1
    EXEC = 0x2
    UID = 0x4
    GID = 0x40
    SID = 0x80
    PTRACE = 0x100
    COMM = 0x200
    NONZERO_EXIT = 0x20000000
    COREDUMP = 0x40000000
    EXIT = 0x80000000


# Plain ints for the event loop: `x & SomeIntFlag.MEMBER` dispatches to the enum's
# Python-level __rand__, which costs microseconds per record in a burst.
PROC_EXEC, PROC_EXIT, PROC_FORK = int(ProcWhat.EXEC), int(ProcWhat.EXIT), int(ProcWhat.FORK)
PROC_COMM = int(ProcWhat.COMM)

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
# struct proc_event { what; cpu; __aligned_u64 timestamp_ns; union event_data }
_PROC_EVENT_HDR = struct.Struct("=IIQ")
_PROC_EXEC = struct.Struct("=ii")  # process_pid, process_tgid
_PROC_EXIT = struct.Struct("=iiII")  # process_pid, process_tgid, exit_code, exit_signal
# then parent_pid, parent_tgid, where the kernel sends them
_PROC_EXIT_WITH_PARENT = struct.Struct("=iiIIii")
_PROC_FORK = struct.Struct("=iiii")  # parent_pid, parent_tgid, child_pid, child_tgid
_PROC_COMM = struct.Struct("=ii16s")  # process_pid, process_tgid, comm
# What decode_proc_events reads of the headers, at their offsets: nlmsghdr's len,
# cn_msg's idx and val, proc_event's what and timestamp_ns; the event's data
# follows, at _PROC_DATA (16 + 20 + 16 bytes).
_PROC_MSG_HEAD = struct.Struct("=I12xII12xI4xQ")
_PROC_DATA = _PROC_MSG_HEAD.size
assert _PROC_DATA == _NLMSGHDR.size + _CN_MSG.size + _PROC_EVENT_HDR.size


class ProcEvent(NamedTuple):
    """One record of the process-events connector.

    ``pid`` is the *thread* id and ``tgid`` the process id, as the kernel names them.
    ``exit_status`` is the wait(2)-style status (``code << 8 | signal``) for EXIT events.
    ``timestamp_ns`` is CLOCK_MONOTONIC (``ktime_get_ns``) at the event.
    """

    what: int
    timestamp_ns: int
    pid: int
    tgid: int
    exit_status: int = 0
    parent_tgid: int = 0  # FORK: the parent; EXIT: the parent at exit (0 if the kernel does not say)
    comm: bytes = b""  # COMM events: the new name, up to its NUL


def decode_proc_events(buf: bytes) -> Iterator[ProcEvent]:
    off, end = 0, len(buf)
    while off + _PROC_DATA <= end:
        # one unpack for the few header fields used, not one per header: every
        # message on the host comes through here (1.06 -> 0.75 us a message)
        nl_len, idx, val, what, ts = _PROC_MSG_HEAD.unpack_from(buf, off)
        if nl_len < _NLMSGHDR.size:
            return
        data, msg_end = off + _PROC_DATA, min(off + nl_len, end)
        off += (nl_len + 3) & ~3
        if idx != CN_IDX_PROC or val != CN_VAL_PROC:
            continue
        # a message cut shorter than its event's data is skipped, never misread
        # (nor an exception: this decoder is total over any bytes)
        if what == PROC_EXEC:
            if data + _PROC_EXEC.size <= msg_end:
                pid, tgid = _PROC_EXEC.unpack_from(buf, data)
                yield ProcEvent(what, ts, pid, tgid)
        elif what == PROC_EXIT:
            if data + _PROC_EXIT_WITH_PARENT.size <= msg_end:
                pid, tgid, code, _sig, _ppid, ptgid = _PROC_EXIT_WITH_PARENT.unpack_from(buf, data)
            elif data + _PROC_EXIT.size <= msg_end:  # a kernel that does not send the parent
                pid, tgid, code, _sig = _PROC_EXIT.unpack_from(buf, data)
                ptgid = 0
            else:
                continue
            yield ProcEvent(what, ts, pid, tgid, code, ptgid)
        elif what == PROC_FORK:
            if data + _PROC_FORK.size <= msg_end:
                ppid, ptgid, cpid, ctgid = _PROC_FORK.unpack_from(buf, data)
                yield ProcEvent(what, ts, cpid, ctgid, 0, ptgid)
        elif what == PROC_COMM:
            if data + _PROC_COMM.size <= msg_end:
                pid, tgid, comm = _PROC_COMM.unpack_from(buf, data)
                yield ProcEvent(what, ts, pid, tgid, comm=comm.split(b"\0", 1)[0])


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a wait(2) status; one of the two is ``None``."""
    if status & 0x7F:
        return None, status & 0x7F
    return (status >> 8) & 0xFF, None


# Classic BPF, for a socket filter that drops connector messages in the kernel.
BPF_LD, BPF_JMP, BPF_RET, BPF_MISC = 0x00, 0x05, 0x06, 0x07
BPF_W, BPF_ABS = 0x00, 0x20
BPF_JEQ, BPF_K, BPF_X, BPF_TAX = 0x10, 0x00, 0x08, 0x00
SO_ATTACH_FILTER = 26

# Byte offsets in a connector message: nlmsghdr (16) + cn_msg (20), then proc_event
_WHAT_OFF = _NLMSGHDR.size + _CN_MSG.size
_DATA_OFF = _WHAT_OFF + _PROC_EVENT_HDR.size


def _net32(value: int) -> int:
    """Socket-filter loads are in network byte order; the fields are host order."""
    return struct.unpack(">I", struct.pack("=I", value))[0]


def proc_connector_filter(exec_events: bool = True, comm: bytes = b"") -> list[tuple[int, int, int, int]]:
    """A cBPF program keeping EXEC events, the EXITs of whole processes only, and
    (if ``comm`` is given) the COMM events of a process renaming itself ``comm``.

    A thread's exit is a connector message too (Go's runc alone has a dozen
    threads); dropping those in the kernel, where ``process_pid != process_tgid``,
    saves user space most of its wakeups during a burst of containers. A COMM event
    comes from prctl(PR_SET_NAME) (not from exec): rare on a host, and runc's init
    sends one as it names itself (see backends/fanotify/); only that name gets through.
    """
    accept = (BPF_RET | BPF_K, 0, 0, 0xFFFFFFFF)
    drop = (BPF_RET | BPF_K, 0, 0, 0)
    # COMM: the name, compared 4 bytes at a time (loads are big-endian, i.e. in
    # byte order), its NUL included: any longer name differs somewhere
    name = comm + b"\0" * (-len(comm) % 4 or 4) if comm else b""
    if len(name) > 16:
        raise ValueError(f"a command name has at most 15 bytes: {comm!r}")
    check_comm: list[tuple[int, int, int, int]] = []
    for off in range(0, len(name), 4):
        word = int.from_bytes(name[off:off + 4], "big")
        check_comm += [
            (BPF_LD | BPF_W | BPF_ABS, 0, 0, _DATA_OFF + 8 + off),  # A = comm[off:off+4]
            # not equal: jump to the drop after the last compare
            (BPF_JMP | BPF_JEQ | BPF_K, 0, 2 * (len(name) - off) // 4 - 1, word),
        ]
    if check_comm:
        check_comm += [accept, drop]
    check_exit = [
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 4, _net32(ProcWhat.EXIT)),  # not EXIT: drop
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, _DATA_OFF),  # A = process_pid
        (BPF_MISC | BPF_TAX, 0, 0, 0),  # X = A
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, _DATA_OFF + 4),  # A = process_tgid
        (BPF_JMP | BPF_JEQ | BPF_X, 1, 0, 0),  # pid == tgid: accept
        drop,
        accept,
    ]
    prog = [(BPF_LD | BPF_W | BPF_ABS, 0, 0, _WHAT_OFF)]  # A = what
    if exec_events:
        # A == EXEC: jump to check_exit's accept (its 7th instruction), over the
        # COMM test if there is one
        prog.append((BPF_JMP | BPF_JEQ | BPF_K, 6 + (1 if check_comm else 0), 0, _net32(ProcWhat.EXEC)))
    if check_comm:
        # A == COMM: go on to the name check, after the EXIT check
        prog.append((BPF_JMP | BPF_JEQ | BPF_K, len(check_exit), 0, _net32(ProcWhat.COMM)))
        return prog + check_exit + check_comm
    return prog + check_exit


def attach_socket_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    insns = _ffi.new("struct sock_filter[]", len(prog))
    for i, (code, jt, jf, k) in enumerate(prog):
        insns[i].code, insns[i].jt, insns[i].jf, insns[i].k = code, jt, jf, k
    fprog = _ffi.new("struct sock_fprog *", {"len": len(prog), "filter": insns})
    _retry(
        _libc.setsockopt, sock.fileno(), socket.SOL_SOCKET, SO_ATTACH_FILTER,
        fprog, _ffi.sizeof("struct sock_fprog"),
    )


def open_proc_connector(
    exec_events: bool = True, rcvbuf: int = 8 << 20, comm: bytes = b"",
) -> socket.socket:
    """Subscribe to the kernel's process events: EXECs, process EXITs, and renames to
    ``comm`` (filtered in the kernel: see :func:`proc_connector_filter`).

    Needs CAP_NET_ADMIN. The receive buffer is forced large because netlink multicast
    *drops* (and reports ``ENOBUFS``) when a reader falls behind; it never blocks the
    process that exits, which is exactly the property the recorder needs.

    The socket is non-blocking.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE, root only
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        attach_socket_filter(sock, proc_connector_filter(exec_events, comm))
        sock.bind((0, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid())
        sock.send(hdr + cn)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
