"""``runctrace doctor``: can each backend run here, and if not, exactly why.

The command is thin; :func:`diagnose` does the work and returns plain data, so
tests (and notebooks) can use it without the CLI.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import List, Optional

import typer
from rich.console import Console

from runctrace import backends
from runctrace.cli import _one_line_errors, app
from runctrace.errors import NotSupported
from runctrace.runc.binaries import ENV_VAR, RuncBinary, find_runc


@dataclass(frozen=True)
class BackendCheck:
    name: str
    ok: bool
    reason: str


@dataclass
class Diagnosis:
    kernel: str  # uname -r
    machine: str  # uname -m
    backends: list[BackendCheck] = field(default_factory=list)
    runc: list[RuncBinary] = field(default_factory=list)
    runc_error: Optional[str] = None  # why no runc was found

    @property
    def usable(self) -> list[str]:
        return [b.name for b in self.backends if b.ok]

    @property
    def auto(self) -> Optional[str]:
        """The backend ``--backend auto`` would pick (the first usable, in preference order)."""
        return self.usable[0] if self.usable else None

    @property
    def ok(self) -> bool:
        return bool(self.usable)


def diagnose(runc_paths: tuple[str, ...] = ()) -> Diagnosis:
    """Check every backend (in ``auto``'s order of preference) and find runc. Never raises."""
    diag = Diagnosis(kernel=platform.release(), machine=platform.machine())
    try:
        diag.runc = find_runc(runc_paths)
    except NotSupported as err:
        diag.runc_error = str(err)
    for name in backends.BACKENDS:  # bcc first: the order open_notifier("auto") tries
        support = backends.backend_support(name, runc_paths)
        diag.backends.append(BackendCheck(name, support.ok, support.reason))
    return diag


DOCTOR_EXAMPLES = """
Examples:

  runctrace doctor                              # exit status 0 if any backend can run

  runctrace doctor --runc-path /opt/bin/runc    # also consider this runc
"""


@app.command(epilog=DOCTOR_EXAMPLES)
@_one_line_errors
def doctor(
    runc_path: List[str] = typer.Option([], "--runc-path", help=f"Also consider this runc binary (repeatable). Also: ${ENV_VAR}."),
    print_bpf: bool = typer.Option(False, "--print-bpf", hidden=True, help="Print the BPF C text the bcc backend compiles, and exit."),
) -> None:
    """Say which backends can run on this host, and exactly why not."""
    out = Console(highlight=False, soft_wrap=True)
    if print_bpf:
        from runctrace.backends.bcc import program_text  # only here: BCC's module loads on demand

        out.print(program_text(), markup=False)
        return
    diag = diagnose(tuple(runc_path))
    out.print(f"kernel: {diag.kernel} ({diag.machine})", markup=False)
    if diag.runc:
        for b in diag.runc:
            others = [a for a in b.aliases if a != b.path]
            out.print(f"runc: {b.path}" + (f" (same file: {', '.join(others)})" if others else ""), markup=False)
    else:
        out.print(f"runc: none found: {diag.runc_error}", markup=False)
    for check in diag.backends:
        verdict = "[green]can run[/]" if check.ok else "[red]cannot run[/]"
        out.print(f"backend {check.name}: {verdict}: ", end="")
        out.print(check.reason, markup=False)
    if diag.ok:
        out.print(f"auto: {diag.auto}", markup=False)
    else:
        out.print("auto: [red]no backend can run here[/]")
        raise typer.Exit(1)
