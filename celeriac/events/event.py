"""What an event is: a flat mapping with a ``type``, its sender, a clock and a time.

Celery's events are plain dictionaries (SPEC §6.2): ``type`` (``task-succeeded``),
``hostname`` (the sender's node name), ``timestamp`` (epoch seconds of the sender),
``utcoffset`` (hours east of UTC), ``pid`` and ``clock`` (a Lamport clock). The group is
the part of the type before the first dash (``task``, ``worker``); the routing key is the
type with dashes made dots (``task.succeeded``), and a batch of one group's events
travels as one message with the routing key ``<group>.multi``.
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time
from typing import Any

from celeriac._version import __version__

__all__ = [
    "SOFTWARE_INFO",
    "Event",
    "LamportClock",
    "adjust_timestamp",
    "group_from",
    "load_average",
    "routing_key_for",
    "utcoffset",
]

SOFTWARE_INFO: dict[str, str] = {
    "sw_ident": "py-celeriac",
    "sw_ver": __version__,
    "sw_sys": platform.system(),
}
"""What a worker says it runs, in every ``worker-*`` event."""


def Event(type: str, _fields: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An event of ``type`` with ``fields``; ``timestamp`` is now unless given."""
    event = dict(_fields, **fields) if _fields else fields
    if "timestamp" not in event:
        event["timestamp"] = time.time()
    event["type"] = type
    return event


def group_from(type: str) -> str:
    """The group of an event type: ``task`` for ``task-sent``."""
    return type.split("-", 1)[0]


def routing_key_for(type: str) -> str:
    """The routing key an event of ``type`` is published with: ``task.sent``."""
    return type.replace("-", ".")


def utcoffset() -> float:
    """Hours east of UTC of this machine's local time, now."""
    seconds_west = time.altzone if time.localtime().tm_isdst else time.timezone
    return -seconds_west / 3600


def adjust_timestamp(timestamp: float, offset: float) -> float:
    """A sender's ``timestamp`` made in this machine's local time (Celery's arithmetic)."""
    return timestamp - (offset - utcoffset()) * 3600


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, rounded up to two decimals (0s where unknown)."""
    try:
        loads = os.getloadavg()
    except OSError:  # not offered on this platform
        return (0.0, 0.0, 0.0)
    one, five, fifteen = (math.ceil(value * 100) / 100 for value in loads)
    return (one, five, fifteen)


class LamportClock:
    """A logical clock: ``forward`` for each event sent, ``adjust`` for each received.

    ``forward`` takes no lock (it runs once per event, in one event loop's thread);
    ``adjust`` does, since receivers may run in other threads.
    """

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._lock = threading.Lock()

    def forward(self) -> int:
        """Advance the clock for an event about to be sent; the new value."""
        self.value += 1
        return self.value

    def adjust(self, other: int) -> int:
        """Move past a received event's clock; the new value."""
        with self._lock:
            self.value = max(self.value, other) + 1
            return self.value
