"""Choose a notifier backend, in one place, and say why.

``auto`` prefers eBPF (BCC): it filters in the kernel and reads runc's arguments at
execve time. It falls back to fanotify, which needs no compiler or kernel headers.
"""

from __future__ import annotations

import importlib
from typing import Optional

from runctrace.errors import NotSupported
from runctrace.backends.base import Callback, Notifier, Support

# name -> "module:Class"; imported lazily (BCC's import alone costs ~100 ms).
BACKENDS = {
    "bcc": "runctrace.backends.bcc:BccNotifier",
    "fanotify": "runctrace.backends.fanotify:FanotifyNotifier",
}
CHOICES = ("auto", *BACKENDS)


def backend_class(name: str) -> type[Notifier]:
    module, _, cls = BACKENDS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as err:  # e.g. BCC's Python bindings are not installed
        raise NotSupported(f"the {name} backend cannot be loaded: {err}") from err


def backend_support(name: str, runc_paths: tuple[str, ...] = ()) -> Support:
    try:
        return backend_class(name).supported(runc_paths=runc_paths)  # type: ignore[call-arg]
    except NotSupported as err:
        return Support(False, str(err))


def open_notifier(
    name: str = "auto", callback: Optional[Callback] = None, runc_paths: tuple[str, ...] = ()
) -> tuple[Notifier, str]:
    """Start the chosen backend; returns it and one line saying what runs and why."""
    if name not in CHOICES:
        raise NotSupported(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    if name != "auto":
        support = backend_support(name, runc_paths)
        if not support:
            raise NotSupported(f"{name} backend unavailable: {support.reason}")
        return backend_class(name)(callback, runc_paths=runc_paths), f"backend: {name}"
    bcc = backend_support("bcc", runc_paths)
    if bcc:
        try:
            return backend_class("bcc")(callback, runc_paths=runc_paths), "backend: bcc (eBPF)"
        except NotSupported as err:
            bcc = Support(False, str(err))
    fan = backend_support("fanotify", runc_paths)
    if not fan:
        raise NotSupported(f"no backend can run: bcc: {bcc.reason}; fanotify: {fan.reason}")
    notifier = backend_class("fanotify")(callback, runc_paths=runc_paths)
    return notifier, f"backend: fanotify (bcc unavailable: {bcc.reason})"
