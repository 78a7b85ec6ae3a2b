"""Decoding the kernel's byte records: pure functions fed hand-built bytes."""

import struct

import pytest

from runctrace import _sys


def fan_record(mask, fd, pid, vers=3):
    return struct.pack("=IBBHQii", 24, vers, 0, 24, mask, fd, pid)


def test_fanotify_records():
    buf = fan_record(_sys.FanEvent.OPEN_EXEC, 7, 100) + fan_record(_sys.FanEvent.Q_OVERFLOW, -1, 0)
    recs = _sys.decode_fanotify(buf)
    assert recs == [
        _sys.FanotifyRecord(mask=0x1000, fd=7, pid=100),
        _sys.FanotifyRecord(mask=0x4000, fd=-1, pid=0),
    ]


def test_fanotify_bad_version_and_truncation():
    with pytest.raises(ValueError, match="version"):
        _sys.decode_fanotify(fan_record(0x1000, 3, 1, vers=2))
    bad = struct.pack("=IBBHQii", 48, 3, 0, 24, 0x1000, 3, 1)
    with pytest.raises(ValueError, match="truncated"):
        _sys.decode_fanotify(bad)


def inotify_record(wd, mask, name: bytes):
    padded = name + b"\0" * (16 - len(name) % 16) if name else b""
    return struct.pack("=iIII", wd, mask, 0, len(padded)) + padded


def test_inotify_records():
    buf = inotify_record(1, _sys.In.MOVED_TO, b"state.json") + inotify_record(2, _sys.In.IGNORED, b"")
    assert _sys.decode_inotify(buf) == [
        _sys.InotifyRecord(1, 0x80, 0, "state.json"),
        _sys.InotifyRecord(2, 0x8000, 0, ""),
    ]


def proc_msg(what, payload: bytes, idx=1, val=1):
    event = struct.pack("=IIQ", what, 0, 123456789) + payload
    cn = struct.pack("=IIIIHH", idx, val, 0, 0, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_proc_events():
    buf = proc_msg(_sys.ProcWhat.EXEC, struct.pack("=ii", 42, 42))
    buf += proc_msg(_sys.ProcWhat.EXIT, struct.pack("=iiIIii", 43, 43, 7 << 8, 17, 1, 1))
    buf += proc_msg(_sys.ProcWhat.EXEC, struct.pack("=ii", 9, 9), idx=5)  # another connector
    evs = list(_sys.decode_proc_events(buf))
    assert [(e.what, e.pid, e.tgid, e.exit_status) for e in evs] == [
        (_sys.ProcWhat.EXEC, 42, 42, 0),
        (_sys.ProcWhat.EXIT, 43, 43, 7 << 8),
    ]
    assert evs[0].timestamp_ns == 123456789
    assert evs[1].parent_tgid == 1  # the exit names the parent (used for a late runc init)
    short, = _sys.decode_proc_events(proc_msg(_sys.ProcWhat.EXIT, struct.pack("=iiII", 43, 43, 0, 17)))
    assert short.parent_tgid == 0  # a kernel that does not send it
    # ... also when another message follows it in the same buffer: its header
    # is not taken for the parent
    short, after = _sys.decode_proc_events(
        proc_msg(_sys.ProcWhat.EXIT, struct.pack("=iiII", 43, 43, 0, 17)) + proc_msg(_sys.ProcWhat.EXEC, struct.pack("=ii", 44, 44)))
    assert (short.parent_tgid, after.tgid) == (0, 44)


def test_proc_events_stop_at_a_bad_length_or_a_cut_message():
    good = proc_msg(_sys.ProcWhat.EXEC, struct.pack("=ii", 42, 42))
    bad_len = struct.pack("=IHHII", 8, 3, 0, 0, 0) + good[16:]  # shorter than its own header
    assert list(_sys.decode_proc_events(bad_len + good)) == []
    # a last message cut inside its headers is not read
    assert [e.tgid for e in _sys.decode_proc_events(good + good[:40])] == [42]


@pytest.mark.parametrize("status,expected", [(0, (0, None)), (7 << 8, (7, None)), (9, (None, 9)), (0x80 | 11, (None, 11))])
def test_wait_status(status, expected):
    assert _sys.decode_wait_status(status) == expected


def run_cbpf(prog, packet: bytes) -> int:
    """A tiny classic-BPF interpreter for the instructions the filter uses."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == _sys.BPF_LD | _sys.BPF_W | _sys.BPF_ABS:
            a = struct.unpack_from(">I", packet, k)[0]  # network byte order, as the kernel
        elif code == _sys.BPF_MISC | _sys.BPF_TAX:
            x = a
        elif code in (_sys.BPF_JMP | _sys.BPF_JEQ | _sys.BPF_K, _sys.BPF_JMP | _sys.BPF_JEQ | _sys.BPF_X):
            operand = k if code & _sys.BPF_X == 0 else x
            pc += jt if a == operand else jf
        elif code == _sys.BPF_RET | _sys.BPF_K:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


def comm_msg(name: bytes, pid=46, tgid=46):
    return proc_msg(_sys.ProcWhat.COMM, struct.pack("=ii16s", pid, tgid, name))


@pytest.mark.parametrize("comm", [b"", b"runc:[2:INIT]", b"abcd", b"fifteen-bytes!!"])
@pytest.mark.parametrize("exec_events", [True, False])
def test_connector_filter_program(exec_events, comm):
    prog = _sys.proc_connector_filter(exec_events, comm)
    exec_msg = proc_msg(_sys.ProcWhat.EXEC, struct.pack("=ii", 42, 42))
    leader_exit = proc_msg(_sys.ProcWhat.EXIT, struct.pack("=iiIIii", 43, 43, 0, 17, 1, 1))
    thread_exit = proc_msg(_sys.ProcWhat.EXIT, struct.pack("=iiIIii", 44, 43, 0, 17, 1, 1))
    fork = proc_msg(_sys.ProcWhat.FORK, struct.pack("=iiii", 1, 1, 45, 45))
    assert bool(run_cbpf(prog, exec_msg)) is exec_events
    assert run_cbpf(prog, leader_exit) == 0xFFFFFFFF
    assert run_cbpf(prog, thread_exit) == 0
    assert run_cbpf(prog, fork) == 0
    # renames: only to exactly ``comm``, and only if asked for
    assert run_cbpf(prog, comm_msg(comm)) == (0xFFFFFFFF if comm else 0)
    for other in (b"runc:[1:CHILD]", comm[:-1], comm + b"x", b"x" + comm[1:], b"sh"):
        if other != comm and len(other) < 16:
            assert run_cbpf(prog, comm_msg(other)) == 0, other


def test_connector_filter_refuses_a_name_the_kernel_cannot_hold():
    with pytest.raises(ValueError):
        _sys.proc_connector_filter(True, b"sixteen-bytes!!!")


def test_comm_events_decode_to_the_name():
    ev, = _sys.decode_proc_events(comm_msg(b"runc:[2:INIT]", 47, 46))
    assert (ev.what, ev.pid, ev.tgid, ev.comm) == (_sys.PROC_COMM, 47, 46, b"runc:[2:INIT]")


def test_readers_answer_none_when_nothing_is_queued_and_views_otherwise():
    """No exception for EAGAIN (the common case of every look after a wake-up);
    real errors still raise."""
    import os
    import socket

    r, w = os.pipe2(os.O_NONBLOCK)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        pipe, sock = _sys.Reader(r, 64), _sys.DatagramReader(a.fileno(), batch=2, slot=16)
        assert pipe.read() is None and sock.recv_batch() is None
        os.write(w, b"abc")
        assert bytes(pipe.read()) == b"abc" and pipe.read() is None
        for word in (b"one", b"two", b"three"):
            b.send(word)
        # a full batch may leave more queued; a short one took all there was
        assert [bytes(d) for d in sock.recv_batch()] == [b"one", b"two"]
        assert [bytes(d) for d in sock.recv_batch()] == [b"three"]
        assert sock.recv_batch() is None
        os.close(w)
        assert bytes(pipe.read()) == b""  # end of file is not "nothing queued"
        with pytest.raises(OSError):
            _sys.Reader(w, 8).read()  # a closed fd: EBADF
        with pytest.raises(OSError):
            _sys.DatagramReader(w).recv_batch()  # EBADF
    finally:
        os.close(r)
        a.close()
        b.close()


def test_inotify_records_decode_from_a_view_as_from_bytes():
    data = inotify_record(1, _sys.In.MOVED_TO, b"state.json")
    assert _sys.decode_inotify(memoryview(bytearray(data))) == _sys.decode_inotify(data)
