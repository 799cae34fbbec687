"""A client's ``task-sent`` events (``task_send_sent_event``), sent off the caller's thread.

Publishing a task only queues its ``task-sent`` event on the portal loop's dispatcher
(one ``call_soon_threadsafe``); the dispatcher publishes what has gathered as soon as
the loop gets to it, so a burst of ``delay()`` calls costs a few event messages, not
one round trip each. Events still buffered when the interpreter exits are flushed
(for up to two seconds). The sender's hostname is Celery's ``gen<pid>@<host>``.
"""

from __future__ import annotations

import atexit
import functools
import os
import socket
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from celeriac._portal import get_portal
from celeriac.events.dispatcher import EventDispatcher
from celeriac.protocol.message import format_time, safe_repr

__all__ = ["SentEvents"]

_LIVE: weakref.WeakSet[SentEvents] = weakref.WeakSet()


class SentEvents:
    """The ``task-sent`` events of one app in one process."""

    def __init__(self, make: Any) -> None:
        self._make = make  # () -> EventDispatcher, called on the portal loop
        self._lock = threading.Lock()
        self._dispatcher: EventDispatcher | None = None
        self._pid = 0
        _LIVE.add(self)

    def _current(self) -> EventDispatcher:
        with self._lock:
            if self._dispatcher is None or self._pid != os.getpid():
                self._dispatcher = self._make(f"gen{os.getpid()}@{socket.gethostname()}")
                self._dispatcher.linger = 0.0
                self._pid = os.getpid()
            return self._dispatcher

    def sent(self, requests: Sequence[Any]) -> None:
        """Queue a ``task-sent`` event for each published request (any thread)."""
        dispatcher = self._current()
        loop = get_portal().loop
        for req in requests:
            msg, route = req.message, req.route
            fields = {
                "uuid": msg.id,
                "root_id": msg.root_id or msg.id,
                "parent_id": msg.parent_id,
                "name": msg.task,
                "args": msg.argsrepr if msg.argsrepr is not None else safe_repr(msg.args),
                "kwargs": msg.kwargsrepr if msg.kwargsrepr is not None else safe_repr(msg.kwargs),
                "retries": msg.retries,
                "eta": format_time(msg.eta),
                "expires": format_time(msg.expires),
                "queue": route.queue.name if route.queue is not None else route.routing_key,
                "exchange": route.exchange,
                "routing_key": route.routing_key,
            }
            loop.call_soon_threadsafe(functools.partial(dispatcher.send, "task-sent", **fields))

    def flush(self, timeout: float = 2.0) -> None:
        """Publish what is buffered now (blocking, from outside the portal loop)."""
        dispatcher = self._dispatcher
        if dispatcher is None or self._pid != os.getpid():
            return
        try:
            get_portal().run(_settle(dispatcher), timeout)
        except Exception:  # exiting: nothing more can be done
            pass


async def _settle(dispatcher: EventDispatcher) -> None:
    await dispatcher.flush()


@atexit.register
def _flush_at_exit() -> None:
    for sent in list(_LIVE):
        sent.flush()
