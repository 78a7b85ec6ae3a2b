"""runctrace: see every OCI container that runc creates or ends on a Linux host.

The public front::

    from runctrace import open_notifier, ContainerEvent, EventType

    notifier, why = open_notifier("auto")     # or FanotifyNotifier(callback)
    for event in notifier:                    # ContainerEvent(type=add|remove, ...)
        ...
"""

from runctrace.backends import open_notifier
from runctrace.errors import NotSupported, RecordingError, RunctraceError, RuntimeNotFound
from runctrace.events import ContainerEvent, EventType
from runctrace.backends.base import Notifier, Support

__all__ = [
    "ContainerEvent", "EventType", "Notifier", "Support", "open_notifier",
    "RunctraceError", "NotSupported", "RuntimeNotFound", "RecordingError",
]
__version__ = "0.1.0"
