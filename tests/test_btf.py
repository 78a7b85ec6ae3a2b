"""Struct offsets from BTF: hand-built blobs, and the running kernel's own."""

from __future__ import annotations

import struct

import pytest

import ctypes as ct

from runctrace.backends.bcc.btf import Btf, kernel_offsets
from runctrace.backends.bcc.program import KERNEL_FIELDS, KERNEL_SIZES, TRACEPOINTS, program_text
from runctrace.errors import NotSupported

INT, PTR, STRUCT, UNION, TYPEDEF = 1, 2, 4, 5, 8


def btf_blob(types: list[bytes], strings: bytes) -> bytes:
    body = b"".join(types)
    header = struct.pack("=HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return header + body + strings


def type_record(kind: int, name_off: int, vlen: int, size_or_type: int, extra: bytes = b"") -> bytes:
    return struct.pack("=III", name_off, kind << 24 | vlen, size_or_type) + extra


def members(*items: tuple[int, int, int]) -> bytes:
    return b"".join(struct.pack("=III", *m) for m in items)


# names: 1 "int", 5 "outer", 11 "a", 13 "field", 19 "alias"
STRINGS = b"\0int\0outer\0a\0field\0alias\0"


def sample() -> Btf:
    return Btf(btf_blob([
        type_record(INT, 1, 0, 4, struct.pack("=I", 32)),  # 1: int
        type_record(UNION, 0, 1, 4, members((13, 1, 0))),  # 2: union { int field; }
        type_record(TYPEDEF, 19, 0, 2),  # 3: typedef union alias
        # 4: struct outer { int a; union { int field; }; }   (anonymous, by bit offset 32)
        type_record(STRUCT, 5, 2, 8, members((11, 1, 0), (0, 2, 32))),
        # 5: struct outer2 would repeat the name: the first one wins
        type_record(STRUCT, 5, 1, 4, members((11, 1, 0))),
        # 6: an anonymous struct member behind a typedef, at byte 16
        type_record(STRUCT, 0, 1, 24, members((0, 3, 128))),
    ], STRINGS))


def test_offsets_of_members_and_of_members_of_anonymous_unions():
    btf = sample()
    assert btf.offset_of("outer", "a") == 0
    assert btf.offset_of("outer", "field") == 4
    with pytest.raises(KeyError):
        btf.offset_of("outer", "missing")
    with pytest.raises(KeyError):
        btf.offset_of("nosuch", "a")


def test_anonymous_members_behind_a_typedef():
    btf = sample()
    assert btf._find(6, "field", 0)[0] == 128


def test_sizes_of_members_through_typedefs():
    # 1 int (8 bytes), 2 typedef alias -> 1, 3 pointer -> 1,
    # 4 struct outer { alias a; int *field; }
    btf = Btf(btf_blob([
        type_record(INT, 1, 0, 8, struct.pack("=I", 64)),
        type_record(TYPEDEF, 19, 0, 1),
        type_record(PTR, 0, 0, 1),
        type_record(STRUCT, 5, 2, 16, members((11, 2, 0), (13, 3, 64))),
    ], STRINGS))
    assert (btf.offset_of("outer", "a"), btf.size_of("outer", "a")) == (0, 8)
    assert btf.offset_of("outer", "field") == 8
    with pytest.raises(KeyError):
        btf.size_of("outer", "field")  # a pointer: BTF gives it no size
    assert sample().size_of("outer", "field") == 4  # inside the anonymous union


@pytest.mark.parametrize("damage", ["magic", "short", "sections", "kind"])
def test_damaged_btf_is_a_value_error(damage):
    good = btf_blob([type_record(INT, 1, 0, 4, struct.pack("=I", 32))], STRINGS)
    bad = {
        "magic": b"\x00\x00" + good[2:],
        "short": good[:10],
        "sections": good[:-4],
        "kind": btf_blob([type_record(31, 1, 0, 4)], STRINGS),
    }[damage]
    with pytest.raises(ValueError):
        Btf(bad)


def test_no_btf_is_a_reason_not_a_crash(tmp_path):
    with pytest.raises(NotSupported, match="CONFIG_DEBUG_INFO_BTF"):
        kernel_offsets(KERNEL_FIELDS, str(tmp_path / "vmlinux"))
    (tmp_path / "vmlinux").write_bytes(b"garbage")
    with pytest.raises(NotSupported, match="cannot read"):
        kernel_offsets(KERNEL_FIELDS, str(tmp_path / "vmlinux"))


def test_the_running_kernels_offsets():
    """mm_struct declares ``unsigned long arg_start, arg_end`` together in every
    kernel: a parser that got the layout wrong would not find them 8 bytes apart."""
    offsets = kernel_offsets(KERNEL_FIELDS)
    assert offsets["RT_OFF_MM_ARG_END"] - offsets["RT_OFF_MM_ARG_START"] == 8
    assert offsets["RT_OFF_TASK_MM"] != offsets["RT_OFF_TASK_SIGNAL"]
    assert all(0 <= v < 16384 for v in offsets.values())


def test_the_running_kernels_sizes():
    """i_ino is an unsigned long (the BPF program reads it at its width), s_dev a
    32-bit dev_t."""
    sizes = kernel_offsets({}, sizes=KERNEL_SIZES)
    assert sizes == {"RT_SIZE_INODE_I_INO": ct.sizeof(ct.c_ulong), "RT_SIZE_SUPER_BLOCK_S_DEV": 4}


def test_no_syscall_tracepoint_taxes_the_host():
    """Attaching any syscalls: tracepoint slows every syscall of every process
    (bench/bench_syscall_tax.py); the program must not use one."""
    assert not [tp for tp in TRACEPOINTS if tp.startswith(("syscalls:", "raw_syscalls:"))]
    assert "TRACEPOINT_PROBE(syscalls" not in program_text()
    assert "TRACEPOINT_PROBE(raw_syscalls" not in program_text()
