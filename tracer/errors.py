"""runctrace's exceptions. Every error a user can cause reaches the CLI as one of these.

    RunctraceError                 base; the CLI prints it as one line, exit 1
    ├── NotSupported               a backend cannot run here (no root, no fanotify, ...)
    ├── RuntimeNotFound            no runc binary at any path tried
    └── RecordingError             the output cannot be written (a bad or untrusted path; a disk still full at stop)

OS errors are translated at the boundary with ``raise ... from err`` so the cause
stays in the traceback for developers but the message alone tells the user what to do.
"""


class RunctraceError(Exception):
    """Base of every error runctrace raises on purpose."""


class NotSupported(RunctraceError):
    """A notifier backend cannot run on this host; the message says why."""


class RuntimeNotFound(NotSupported):
    """No runc binary was found; the message lists every path tried."""


class RecordingError(RunctraceError):
    """The recording cannot be written."""
