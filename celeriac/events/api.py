"""``app.events``: the app's dispatcher, receiver and state classes, as Celery's.

``app.events.Dispatcher(hostname=...)`` sends events on the app's broker,
``app.events.Receiver(connection, handlers={...})`` receives them and
``app.events.State()`` keeps the cluster's state built from them. The bus under them is
the broker engine's (:func:`celeriac.events.bus.event_bus`), with the ``event_*``
settings; :attr:`AppEvents.supported` says whether the broker carries events at all.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from celeriac.engines import offers
from celeriac.engines.options import broker_options
from celeriac.events.bus import EventBus, EventChannel, event_bus
from celeriac.events.client import SentEvents
from celeriac.events.dispatcher import EventDispatcher
from celeriac.events.event import LamportClock
from celeriac.events.receiver import EventReceiver, Handler
from celeriac.events.state import State

__all__ = ["AppEvents"]


class AppEvents:
    """The event classes bound to one app (``app.events``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.clock = LamportClock()
        """The app's logical clock, shared by its dispatchers and receivers."""
        self.sent = SentEvents(
            lambda hostname: self.Dispatcher(hostname=hostname), lambda: self.app.broker_url
        )
        """The client's ``task-sent`` events (sent when ``task_send_sent_event`` is on)."""

    @property
    def supported(self) -> bool:
        """Whether the app's broker carries events."""
        return offers(self.app.broker_url, "events")

    @property
    def channel(self) -> EventChannel:
        """The event exchange and receiver queues the settings describe."""
        return EventChannel.from_conf(self.app.conf)

    def bus(self, url: str | None = None) -> EventBus:
        """A new event bus on ``url`` (the app's broker by default)."""
        url = url or self.app.broker_url
        return event_bus(url, broker_options(self.app.conf, url), self.channel)

    def Dispatcher(
        self,
        connection: Any = None,
        hostname: str | None = None,
        enabled: bool = True,
        groups: Any = None,
        serializer: str | None = None,
        **_: Any,
    ) -> EventDispatcher:
        """A dispatcher on the app's broker (``connection``: a broker URL, or None)."""
        return EventDispatcher(
            self.bus(_url_of(connection)),
            hostname or f"gen{os.getpid()}@{socket.gethostname()}",
            serializer=serializer or self.channel.serializer,
            groups=groups,
            enabled=enabled,
            clock=self.clock,
        )

    def Receiver(
        self,
        connection: Any = None,
        handlers: Mapping[str, Handler] | None = None,
        routing_key: str = "#",
        accept: set[str] | None = None,
        **_: Any,
    ) -> EventReceiver:
        """A receiver on the app's broker (``connection``: a broker URL, or None)."""
        return EventReceiver(
            self.bus(_url_of(connection)),
            handlers,
            routing_key=routing_key,
            clock=self.clock,
            accept=accept or {self.channel.serializer, "json"},
        )

    def State(self, **kwargs: Any) -> State:
        """A new cluster state (``max_tasks_in_memory``, ``max_workers_in_memory`` ...)."""
        return State(**kwargs)


def _url_of(connection: Any) -> str | None:
    """A broker URL from what Celery code passes as ``connection``."""
    if connection is None:
        return None
    if isinstance(connection, str):
        return connection
    as_uri = getattr(connection, "as_uri", None)
    return str(as_uri(include_password=True)) if callable(as_uri) else None
