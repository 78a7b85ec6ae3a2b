"""Byte offsets (and sizes) of kernel struct fields, from the running kernel's own BTF.

The eBPF backend reads a few fields of the current task (its argv's bounds, its
exit status, the inode of the file it executes). BCC compiles against whatever
kernel headers are installed; where those are another kernel version's (a
kernel that ships none, with a distribution's headers linked in), an
``offsetof()`` from them would read the wrong bytes, silently.
``/sys/kernel/btf/vmlinux`` describes the kernel that is running, so the offsets
(and the widths of fields whose type is the architecture's) come from there, and
reach the BPF program as ``-D`` constants.

The format (Documentation/bpf/btf.rst): a header, then the type section (type
records, each followed by data whose size depends on its kind), then the string
section. Type IDs count from 1 in the order of the records.
"""

from __future__ import annotations

import struct
from array import array
from typing import Optional

from runctrace.errors import NotSupported

VMLINUX = "/sys/kernel/btf/vmlinux"

_HEADER = struct.Struct("=HBBIIIII")  # magic, version, flags, hdr_len, type_off/len, str_off/len
_TYPE = struct.Struct("=III")  # name_off, info, size or type
_MEMBER = struct.Struct("=III")  # name_off, type, offset
_MAGIC = 0xEB9F

_STRUCT, _UNION = 4, 5
# kinds whose record's third word is the type's size in bytes: INT, STRUCT,
# UNION, ENUM, FLOAT, ENUM64 (a pointer's size is the architecture's, not in BTF)
_SIZED = {1, 4, 5, 6, 16, 19}
# kinds that only qualify or rename another type: typedef, volatile, const,
# restrict, type tag
_ALIASES = {8, 9, 10, 11, 18}
# bytes after a type record, by kind: a fixed part, and a part per vlen entry
_EXTRA = {
    1: (4, 0),  # INT
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    17: (4, 0),  # DECL_TAG
    19: (0, 12),  # ENUM64
}
_KNOWN_KINDS = set(range(1, 20))


class Btf:
    """The structs and unions of one BTF blob, enough to find member offsets.
    Raises ValueError for a blob that is not BTF, or is damaged."""

    def __init__(self, data: bytes) -> None:
        try:
            self._parse(data)
        except (struct.error, UnicodeDecodeError) as err:  # a record or name cut short
            raise ValueError(f"BTF cut short or damaged: {err}") from None

    def _parse(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise ValueError("BTF too short for its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError(f"not BTF (magic {magic:#x}), or of the other byte order")
        types_at, strings_at = hdr_len + type_off, hdr_len + str_off
        if types_at + type_len > len(data) or strings_at + str_len > len(data):
            raise ValueError("BTF sections run past its end")
        self._data = data
        self._strings = (strings_at, strings_at + str_len)
        # where each type's record starts, by type id - 1 (for typedefs and
        # qualifiers in front of an anonymous member: see _resolve)
        self._offsets = array("Q")
        # type id -> (its members' offset in data, vlen, kind_flag), for structs
        # and unions only; named structs by name
        self._composites: dict[int, tuple[int, int, bool]] = {}
        self._by_name: dict[str, int] = {}
        off, end, type_id = types_at, types_at + type_len, 1
        while off < end:
            self._offsets.append(off)
            name_off, info, _size = _TYPE.unpack_from(data, off)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind not in _KNOWN_KINDS:
                raise ValueError(f"BTF type {type_id} has an unknown kind {kind}")
            fixed, each = _EXTRA.get(kind, (0, 0))
            if kind in (_STRUCT, _UNION):
                self._composites[type_id] = (off + _TYPE.size, vlen, bool(info >> 31))
                if name_off and kind == _STRUCT:
                    self._by_name.setdefault(self._name(name_off), type_id)
            off += _TYPE.size + fixed + each * vlen
            type_id += 1

    def _name(self, name_off: int) -> str:
        start, end = self._strings
        at = start + name_off
        stop = self._data.index(b"\0", at, end)
        return self._data[at:stop].decode()

    def offset_of(self, struct_name: str, member: str) -> int:
        """Byte offset of ``member`` in ``struct struct_name`` (looking inside its
        anonymous structs and unions, as C does). Raises KeyError if absent."""
        return self._member(struct_name, member)[0]

    def size_of(self, struct_name: str, member: str) -> int:
        """Size in bytes of ``member`` of ``struct struct_name``: of an integer,
        enum, struct or union member, through typedefs and qualifiers. Raises
        KeyError if absent, or if BTF gives the member's type no size (a pointer)."""
        _off, type_id = self._member(struct_name, member)
        for _ in range(16):
            if not 0 < type_id <= len(self._offsets):
                break
            _name_off, info, size_or_type = _TYPE.unpack_from(self._data, self._offsets[type_id - 1])
            kind = (info >> 24) & 0x1F
            if kind in _SIZED:
                return size_or_type
            if kind not in _ALIASES:
                break
            type_id = size_or_type
        raise KeyError(f"{struct_name}.{member}'s size (not an integer, enum, struct or union)")

    def _member(self, struct_name: str, member: str) -> tuple[int, int]:
        """(byte offset, type id) of a member, as offset_of finds it."""
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise KeyError(f"struct {struct_name}")
        try:
            found = self._find(type_id, member, 0)
        except (struct.error, ValueError, UnicodeDecodeError):  # a member or name past the end
            raise KeyError(f"struct {struct_name}'s members (damaged)") from None
        if found is None:
            raise KeyError(f"struct {struct_name} has no member {member}")
        bits, m_type = found
        if bits % 8:
            raise KeyError(f"{struct_name}.{member} is a bitfield")
        return bits // 8, m_type

    def _find(self, type_id: int, member: str, depth: int) -> Optional[tuple[int, int]]:
        """(bit offset, type id) of ``member`` in composite ``type_id``, or None."""
        if depth > 8:
            return None
        at, vlen, kind_flag = self._composites[type_id]
        for i in range(vlen):
            name_off, m_type, m_off = _MEMBER.unpack_from(self._data, at + i * _MEMBER.size)
            bits = m_off & 0xFFFFFF if kind_flag else m_off
            if name_off and self._name(name_off) == member:
                return bits, m_type
            if not name_off:  # an anonymous struct or union: its members are ours
                inner = self._resolve(m_type)
                if inner is not None:
                    found = self._find(inner, member, depth + 1)
                    if found is not None:
                        return bits + found[0], found[1]
        return None

    def _resolve(self, type_id: int) -> Optional[int]:
        """The struct or union behind ``type_id`` through const/volatile/typedef, if any."""
        for _ in range(16):
            if type_id in self._composites:
                return type_id
            if not 0 < type_id <= len(self._offsets):
                return None
            _name_off, info, next_id = _TYPE.unpack_from(self._data, self._offsets[type_id - 1])
            if (info >> 24) & 0x1F not in _ALIASES:
                return None
            type_id = next_id
        return None


def kernel_offsets(fields: dict[str, tuple[str, str]], path: str = VMLINUX,
                   sizes: Optional[dict[str, tuple[str, str]]] = None) -> dict[str, int]:
    """``{macro: (struct, member)}`` -> ``{macro: byte offset}`` for the running kernel,
    and for each of ``sizes``' macros the member's size in bytes."""
    try:
        with open(path, "rb") as f:
            btf = Btf(f.read())
    except OSError as err:
        raise NotSupported(f"no kernel BTF at {path} ({err.strerror}): the kernel needs CONFIG_DEBUG_INFO_BTF") from err
    except ValueError as err:
        raise NotSupported(f"cannot read the kernel's BTF at {path}: {err}") from err
    try:
        out = {macro: btf.offset_of(s, m) for macro, (s, m) in fields.items()}
        out.update({macro: btf.size_of(s, m) for macro, (s, m) in (sizes or {}).items()})
    except KeyError as err:
        raise NotSupported(f"the kernel's BTF has no {err.args[0]}") from err
    return out
