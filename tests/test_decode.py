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


@pytest.mark.parametrize("status,expected", [(0, (0, None)), (7 << 8, (7, None)), (9, (None, 9)), (0x80 | 11, (None, 11))])
def test_wait_status(status, expected):
    assert _sys.decode_wait_status(status) == expected


def test_connector_filter_program_shape():
    prog = _sys.proc_connector_filter((_sys.ProcWhat.EXEC, _sys.ProcWhat.EXIT))
    assert prog[0] == (0x20, 0, 0, 36)  # ld word at proc_event.what
    # the constants are byte-swapped: socket filters load in network byte order
    assert prog[1][3] == 0x02000000 and prog[2][3] == 0x00000080
    # jump targets land on the accept instruction
    assert 1 + 1 + prog[1][1] == len(prog) - 1
    assert 2 + 1 + prog[2][1] == len(prog) - 1
    assert prog[-2][3] == 0 and prog[-1][3] == 0xFFFFFFFF
