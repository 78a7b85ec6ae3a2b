"""Parse a runc command line the way runc itself (urfave/cli v1 over Go's ``flag``) does.

Pure functions over ``argv`` lists, so every invocation style is a table-driven unit
test: containerd's shim (``--root R --log L --log-format json create --bundle B
--pid-file P ID``), ``run`` in the foreground and with ``-d``, ``--flag=value``,
single-dash flags, and no ``--bundle`` at all (then the bundle is runc's working
directory). The container ID is runc's positional argument, never a guess from a path.

Go's flag rules that matter here:
* ``-f`` and ``--f`` are the same flag; ``-f=v`` and ``-f v`` both set a value flag;
  a boolean flag takes a value only as ``-f=true``.
* Parsing stops at the first non-flag argument or after ``--``.
* Global flags come before the subcommand; flags after the ID are runc's error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

DEFAULT_ROOT = "/run/runc"

# Global flags of runc 1.1 that take a value. The boolean ones (--debug,
# --systemd-cgroup, --help, --version) need no table: anything else is a bool.
_GLOBAL_VALUE_FLAGS = {"log", "log-format", "root", "criu", "rootless"}

# Value flags of the subcommands that make a container. Short aliases map to long.
_SUB_VALUE_FLAGS = {
    "bundle", "console-socket", "pid-file", "preserve-fds",
    # restore (checkpoint/restore also creates a container)
    "image-path", "work-path", "manage-cgroups-mode", "empty-ns", "lsm-profile",
    "lsm-mount-context",
}
_ALIASES = {"b": "bundle", "d": "detach"}
_KNOWN_SUB_BOOL_FLAGS = {
    "detach", "keep", "no-subreaper", "no-pivot", "no-new-keyring", "help",
    "tcp-established", "ext-unix-sk", "shell-job", "file-locks", "auto-dedup", "lazy-pages",
}
_KNOWN_GLOBAL_BOOL_FLAGS = {"debug", "systemd-cgroup", "help", "version", "h", "v"}

# Subcommands after which a container exists (its init process is running).
CREATING_COMMANDS = frozenset({"create", "run", "restore"})


@dataclass
class RuncCall:
    """What one runc invocation asked for."""

    argv: list[str]
    command: Optional[str] = None  # "create", "run", "start", "delete", "init", ...
    container_id: Optional[str] = None
    bundle: Optional[str] = None  # absolute; the caller's cwd when --bundle is absent
    pid_file: Optional[str] = None  # absolute, or None
    root: str = DEFAULT_ROOT  # runc's state directory (--root)
    detach: bool = False
    global_flags: dict[str, str] = field(default_factory=dict)
    command_flags: dict[str, str] = field(default_factory=dict)
    # Why this call cannot be a container creation even though it may look like one.
    error: Optional[str] = None

    @property
    def creates_container(self) -> bool:
        return self.command in CREATING_COMMANDS and self.error is None and bool(self.container_id)

    @property
    def state_dir(self) -> Optional[str]:
        if not self.container_id:
            return None
        return os.path.join(self.root, self.container_id)


def _split_flag(arg: str) -> tuple[str, Optional[str]]:
    """'--a=b' -> ('a', 'b'); '-a' -> ('a', None)."""
    body = arg[2:] if arg.startswith("--") else arg[1:]
    name, eq, value = body.partition("=")
    return name, (value if eq else None)


def _parse_flags(
    args: list[str], value_flags: set[str], known_bools: set[str]
) -> tuple[dict[str, str], list[str], Optional[str]]:
    """Go ``flag.Parse``: returns (flags, remaining args, error)."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return flags, args[i + 1 :], None
        if len(arg) < 2 or not arg.startswith("-") or arg.startswith("---"):
            break
        name, value = _split_flag(arg)
        name = _ALIASES.get(name, name)
        if not name:
            return flags, args[i:], f"bad flag syntax: {arg}"
        if name in value_flags:
            if value is None:
                if i + 1 >= len(args):
                    return flags, [], f"flag needs an argument: -{name}"
                value = args[i + 1]
                i += 1
        elif value is None:
            value = "true"
        elif name in known_bools and value.lower() not in {"true", "false", "1", "0", "t", "f"}:
            return flags, args[i:], f"invalid boolean value {value!r} for -{name}"
        flags[name] = value
        i += 1
    return flags, args[i:], None


def _abs(path: str, cwd: Optional[str]) -> str:
    if os.path.isabs(path) or not cwd:
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(cwd, path))


def _true(value: Optional[str]) -> bool:
    return (value or "").lower() in {"true", "1", "t"}


def parse_runc_args(argv: list[str], cwd: Optional[str] = None) -> RuncCall:
    """Parse runc's full argv (argv[0] included). ``cwd`` is runc's working directory."""
    call = RuncCall(argv=list(argv))
    gflags, rest, err = _parse_flags(list(argv[1:]), _GLOBAL_VALUE_FLAGS, _KNOWN_GLOBAL_BOOL_FLAGS)
    call.global_flags = gflags
    if err:
        call.error = err
        return call
    if "root" in gflags:
        call.root = _abs(gflags["root"], cwd)
    if not rest:
        call.error = "no subcommand"
        return call
    call.command, rest = rest[0], rest[1:]
    if call.command not in CREATING_COMMANDS:
        # start/delete/kill/state...: the ID is still useful for context, parse leniently
        cflags, pos, _ = _parse_flags(rest, _SUB_VALUE_FLAGS, _KNOWN_SUB_BOOL_FLAGS)
        call.command_flags = cflags
        call.container_id = pos[0] if pos else None
        return call
    cflags, pos, err = _parse_flags(rest, _SUB_VALUE_FLAGS, _KNOWN_SUB_BOOL_FLAGS)
    call.command_flags = cflags
    if err:
        call.error = err
        return call
    if len(pos) != 1:
        call.error = f"{call.command} takes exactly one container ID, got {len(pos)} arguments"
        return call
    if not pos[0] or "/" in pos[0] or pos[0] in {".", ".."}:
        call.error = f"invalid container ID {pos[0]!r}"
        return call
    call.container_id = pos[0]
    call.detach = _true(cflags.get("detach"))
    bundle = cflags.get("bundle")
    call.bundle = _abs(bundle, cwd) if bundle else (os.path.normpath(cwd) if cwd else None)
    if cflags.get("pid-file"):
        call.pid_file = _abs(cflags["pid-file"], cwd)
    return call
