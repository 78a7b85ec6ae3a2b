"""runctrace: see every OCI container that runc creates or ends on a Linux host.

The public front::

    from runctrace import open_notifier, ContainerEvent, EventType

    notifier, why = open_notifier("auto")     # or FanotifyNotifier(callback)
    for event in notifier:                    # ContainerEvent(type=add|remove, ...)
        ...
"""

from .backends import open_notifier
from .errors import NotSupported, RecordingError, RunctraceError, RuntimeNotFound
from .events import ContainerEvent, EventType
from .notifier import Notifier, Support

__all__ = [
    "ContainerEvent", "EventType", "Notifier", "Support", "open_notifier",
    "RunctraceError", "NotSupported", "RuntimeNotFound", "RecordingError",
]
__version__ = "0.1.0"
