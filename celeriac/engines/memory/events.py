"""Events on the memory engine: a fanout inside one process, per ``memory://`` store.

Every subscription has its own inbox; a publish copies each message into the inbox of
every subscription whose binding matches its routing key (AMQP topic rules) and wakes
it, on whatever event loop it waits. An inbox keeps messages ``event_queue_ttl``
seconds at most and 10 000 at most (the oldest go first), like a receiver's queue
with a message TTL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.engines.memory.connection import Stores
from celeriac.events.bus import EventChannel, Published
from celeriac.protocol.envelope import Envelope
from celeriac.transport.exchanges import topic_matches

__all__ = ["INBOX_LIMIT", "MemoryEventBus", "MemorySubscription"]

INBOX_LIMIT = 10_000
"""Messages one subscription keeps at most."""


class MemorySubscription:
    """One subscription's inbox."""

    def __init__(self, hub: _Hub, binding: str, ttl: float | None) -> None:
        self.binding = binding
        self._hub = hub
        self._ttl = ttl
        self._inbox: deque[tuple[float, Envelope]] = deque(maxlen=INBOX_LIMIT)
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()

    def put(self, envelope: Envelope) -> None:
        """Add a message (any thread) and wake the receiver."""
        with self._lock:
            self._inbox.append((time.monotonic(), envelope))
        try:
            self._loop.call_soon_threadsafe(self._arrived.set)
        except RuntimeError:  # the receiver's loop is closed: it is gone
            self._hub.remove(self)

    async def receive(self, timeout: float) -> list[Envelope]:
        """The messages in the inbox, waiting up to ``timeout`` s for one."""
        if not self._inbox:
            self._arrived.clear()
            try:
                async with asyncio.timeout(timeout):  # (not wait_for: a cancel may be lost)
                    await self._arrived.wait()
            except TimeoutError:
                return []
        with self._lock:
            items = list(self._inbox)
            self._inbox.clear()
        oldest = time.monotonic() - self._ttl if self._ttl is not None else None
        return [env for at, env in items if oldest is None or at >= oldest]

    async def close(self) -> None:
        """Stop receiving."""
        self._hub.remove(self)


class _Hub:
    """The subscriptions of one store (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[MemorySubscription] = []

    def add(self, subscription: MemorySubscription) -> None:
        with self._lock:
            self._subscriptions.append(subscription)

    def remove(self, subscription: MemorySubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def deliver(self, messages: Sequence[Published]) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for message in messages:
            for subscription in subscriptions:
                if topic_matches(subscription.binding, message.routing_key):
                    subscription.put(message.envelope)


_HUBS: Stores[_Hub] = Stores(_Hub)


class MemoryEventBus:
    """The event exchange of one ``memory://`` store."""

    def __init__(self, url: str, options: Mapping[str, Any], channel: EventChannel) -> None:
        del options  # none apply
        self.url = url
        self.channel = channel
        self._hub = _HUBS.get(url)

    async def publish(self, messages: Sequence[Published]) -> None:
        """Copy each message to the matching subscriptions."""
        self._hub.deliver(messages)

    async def subscribe(self, binding: str = "#") -> MemorySubscription:
        """A new inbox for ``binding``."""
        subscription = MemorySubscription(self._hub, binding, self.channel.queue_ttl)
        self._hub.add(subscription)
        return subscription

    async def close(self) -> None:
        """Nothing to release."""
