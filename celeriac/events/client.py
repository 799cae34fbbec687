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
from collections.abc import Callable, Sequence
from typing import Any

from celeriac._portal import get_portal
from celeriac.events.dispatcher import EventDispatcher
from celeriac.protocol.message import format_time, safe_repr

__all__ = ["SentEvents"]

_LIVE: weakref.WeakSet[SentEvents] = weakref.WeakSet()


class SentEvents:
    """The ``task-sent`` events of one app in one process."""

    def __init__(self, make: Callable[[str], EventDispatcher], url: Callable[[], str]) -> None:
        self._make = make  # hostname -> a dispatcher on the app's broker
        self._url = url
        self._lock = threading.Lock()
        self._dispatcher: EventDispatcher | None = None
        self._key: tuple[int, str] | None = None
        _LIVE.add(self)

    def _current(self) -> EventDispatcher:
        """The dispatcher of this process and the app's broker now (a new one after a fork
        or when the broker URL was changed)."""
        key = (os.getpid(), self._url())
        with self._lock:
            if self._dispatcher is None or self._key != key:
                if self._dispatcher is not None and self._key and self._key[0] == key[0]:
                    get_portal().submit(self._dispatcher.close())  # the old broker's
                self._dispatcher = self._make(f"gen{os.getpid()}@{socket.gethostname()}")
                self._dispatcher.linger = 0.0
                self._key = key
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

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is buffered and close (blocking, from outside the portal loop)."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is None or self._key is None or self._key[0] != os.getpid():
            return
        try:
            get_portal().run(dispatcher.close(), timeout)
        except Exception:  # exiting: nothing more can be done
            pass


@atexit.register
def _close_at_exit() -> None:
    for sent in list(_LIVE):
        sent.close()
