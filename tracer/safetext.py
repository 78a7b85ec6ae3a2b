"""Text that came from outside, made safe for where it goes: a Parquet column, a terminal.

Paths, container IDs and arguments reach runctrace from the kernel as bytes. Python
holds them as ``str`` decoded with ``os.fsdecode`` (the *surrogateescape* error
handler: each byte that is not part of valid UTF-8 becomes one code point
U+DC80..U+DCFF), which loses nothing. Two edges cannot take such a string:

* **Parquet (and JSON for other programs)** hold UTF-8 only. :func:`store` turns a
  value that is not valid UTF-8 into a reversible text form, and the row names the
  column in its ``escaped`` list; :func:`load` turns it back. Valid UTF-8 is stored
  as is, so the common case costs one ``isascii()`` and readers that ignore the
  ``escaped`` column still see every ordinary value unchanged.

  The form, for a value whose column is in ``escaped``: each backslash is doubled,
  each byte that was not valid UTF-8 is written ``\\xHH`` (two lowercase hex
  digits), everything else is itself. A list or a map is escaped whole when any of
  its strings needs it. ``docs/schema.md`` states the same rule for other readers.
* **A terminal** runs escape sequences and takes a newline for a new line: a
  container's argv could paint a fake ``add`` line or clear the operator's screen.
  :func:`printable` shows every control character, every byte that was not valid
  UTF-8 and every bidirectional override as a visible escape.
"""

from __future__ import annotations

import re
from typing import Any, Optional

# ---------------------------------------------------------------------------- storage


def is_clean(text: str) -> bool:
    """Can ``text`` be stored as UTF-8 as it is? (no surrogate code points)"""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escape(text: str) -> str:
    """The reversible form of ``text`` (see the module doc); valid UTF-8 throughout."""
    out = []
    for ch in text.replace("\\", "\\\\"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate: its UTF-8-ish bytes
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2})")


def unescape(text: str) -> str:
    """Undo :func:`escape`: the original string, odd bytes as surrogateescape code points."""

    return _ESCAPED.sub(_unescape_one, text)


def _unescape_one(m: "re.Match[str]") -> str:
    body = m.group(1)
    if body == "\\":
        return "\\"
    byte = int(body[1:], 16)
    # escape() writes only bytes >= 0x80 this way; a lower one (written by
    # something else) is taken as the character it names
    return chr(0xDC00 + byte) if byte >= 0x80 else chr(byte)


def _needs_escape(value: Any) -> bool:
    if isinstance(value, str):
        return not is_clean(value)
    if isinstance(value, (list, tuple)):
        return any(_needs_escape(v) for v in value)
    return False


def _map(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map(v, fn) for v in value)
    if isinstance(value, list):
        return [_map(v, fn) for v in value]
    return value


def store(row: dict[str, Any], columns) -> Optional[list[str]]:
    """Escape, in place, each of ``columns`` of ``row`` whose value is not valid UTF-8.

    Returns the names of the columns escaped (for the row's ``escaped`` column), or
    None when every value was clean (the common case).
    """
    escaped = None
    for name in columns:
        value = row.get(name)
        if value is not None and _needs_escape(value):
            row[name] = _map(value, escape)
            escaped = (escaped or []) + [name]
    return escaped


def load(row: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`store` on a row read back (its ``escaped`` column says which)."""
    for name in row.get("escaped") or ():
        if name in row:
            row[name] = _map(row[name], unescape)
    return row


# --------------------------------------------------------------------------- terminal

# C0 controls, DEL, C1 controls, lone surrogates, and the bidirectional overrides
# and isolates that reorder what a line shows (CVE-2021-42574, "Trojan Source").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _show(m: "re.Match[str]") -> str:
    code = ord(m.group(0))
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """``text`` as one line a terminal shows as it is: nothing in it is run or hidden."""
    text = text if isinstance(text, str) else str(text)
    if text.isascii() and text.isprintable():
        return text
    return _UNPRINTABLE.sub(_show, text)
