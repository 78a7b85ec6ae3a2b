"""Find the runc binaries to watch.

A runc is watched by *inode*, so ``/usr/bin/runc`` -> ``/usr/sbin/runc`` symlinks and
hard links collapse to one watch. If nothing is found, the error lists every path
tried and the two ways to add one.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from runctrace.errors import RuntimeNotFound

ENV_VAR = "RUNCTRACE_RUNC_PATHS"

# The name runc's container init gives itself (nsexec's prctl(PR_SET_NAME), runc
# 1.0 and later) until it execs the container's program. Both backends watch for
# it; bpf/runctrace.h has it as RT_INIT_COMM (a test keeps the two equal).
RUNC_INIT_COMM = b"runc:[2:INIT]"

DEFAULT_PATHS = (
    "/usr/bin/runc",
    "/usr/sbin/runc",
    "/usr/local/bin/runc",
    "/usr/local/sbin/runc",
    "/bin/runc",
    "/sbin/runc",
    # CRI-O packages
    "/usr/libexec/crio/runc",
    "/usr/lib/cri-o-runc/sbin/runc",
    # k3s unpacks its bundled runc under a content-addressed data dir; RKE2 likewise
    "/var/lib/rancher/k3s/data/current/bin/runc",
    "/var/lib/rancher/k3s/data/*/bin/runc",
    "/var/lib/rancher/rke2/bin/runc",
    # Docker's older names and Flatcar's torcx unpack
    "/usr/bin/docker-runc",
    "/usr/libexec/docker/docker-runc-current",
    "/run/torcx/unpack/docker/bin/runc",
)


@dataclass(frozen=True)
class RuncBinary:
    path: str  # the first path (in search order) that led to this inode
    dev: int
    ino: int
    aliases: tuple[str, ...] = ()  # every path tried that is the same file


def candidate_paths(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Extra paths (option, then $RUNCTRACE_RUNC_PATHS) first, then the defaults."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(":") if p]
    out: list[str] = []
    for pattern in [*extra, *env, *DEFAULT_PATHS]:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in matches or [pattern]:
            if path not in out:
                out.append(path)
    return out


def find_runc(extra: list[str] | tuple[str, ...] = ()) -> list[RuncBinary]:
    tried = candidate_paths(extra)
    by_inode: dict[tuple[int, int], list[str]] = {}
    for path in tried:
        try:
            st = os.stat(path)  # follows symlinks: we watch what actually gets executed
        except OSError:
            continue
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        by_inode.setdefault((st.st_dev, st.st_ino), []).append(path)
    if not by_inode:
        raise RuntimeNotFound(
            "no runc binary found; tried " + ", ".join(tried)
            + f". Add a path with --runc-path PATH or {ENV_VAR}=PATH[:PATH...]"
        )
    return [RuncBinary(paths[0], dev, ino, tuple(paths)) for (dev, ino), paths in by_inode.items()]
