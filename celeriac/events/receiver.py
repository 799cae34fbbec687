"""Receive events: :class:`EventReceiver`, Celery's ``app.events.Receiver``.

A receiver subscribes to the event exchange with a binding (``#``: every event) and
hands each event to the handler registered for its type, or to the ``"*"`` handler.
Before that, as Celery's receiver does, it moves the app's Lamport clock past the
event's (``task-sent`` events, whose senders never sync, get the local clock plus a
skew), rewrites ``timestamp`` in local time from the sender's ``utcoffset``, and adds
``local_received``.

:meth:`EventReceiver.capture` and :meth:`~EventReceiver.itercapture` are blocking (the
handlers run in the calling thread); :meth:`~EventReceiver.aiter_events` is the same loop
for asyncio code. A message that is not an event is logged once per kind of fault and
dropped; the receiver keeps going.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from celeriac._portal import get_portal
from celeriac.events.bus import BadEvent, EventBus, Subscription, decode_events
from celeriac.events.event import LamportClock, adjust_timestamp
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import content_type_of

__all__ = ["CLIENT_CLOCK_SKEW", "EventReceiver"]

logger = logging.getLogger("celeriac.events")

CLIENT_CLOCK_SKEW = -1
"""Added to the local clock for ``task-sent`` events (Celery's constant)."""

_POLL = 0.5
"""Seconds one wait for events lasts at most (so a timeout or a stop is seen)."""

Handler = Callable[[dict[str, Any]], Any]


class EventReceiver:
    """Captures events from a bus and dispatches them to handlers by type."""

    def __init__(
        self,
        bus: EventBus,
        handlers: Mapping[str, Handler] | None = None,
        *,
        routing_key: str = "#",
        clock: LamportClock | None = None,
        accept: set[str] | None = None,
    ) -> None:
        self.bus = bus
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.routing_key = routing_key
        self.clock = clock or LamportClock()
        names = accept if accept is not None else {"json"}
        self.accept = frozenset(name if "/" in name else content_type_of(name) for name in names)
        self.should_stop = False
        """Set to True (from a handler) to end a capture."""
        self._faults: set[str] = set()

    def process(self, type: str, event: dict[str, Any]) -> None:
        """Hand ``event`` to the handler of ``type`` (or the ``"*"`` one)."""
        handler = self.handlers.get(type) or self.handlers.get("*")
        if handler is not None:
            handler(event)

    def event_from_message(
        self, body: dict[str, Any], localize: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """``(type, event)`` with the clock adjusted, local time and ``local_received``."""
        type = body["type"]
        if type == "task-sent":
            body["clock"] = (self.clock.value or 1) + CLIENT_CLOCK_SKEW
            self.clock.adjust(body["clock"])
        elif isinstance(body.get("clock"), int):
            self.clock.adjust(body["clock"])
        else:
            body["clock"] = self.clock.forward()
        if localize and isinstance(body.get("timestamp"), int | float):
            offset = body.get("utcoffset")
            if isinstance(offset, int | float):
                body["timestamp"] = adjust_timestamp(body["timestamp"], offset)
        body["local_received"] = time.time()
        return type, body

    def events_of(self, envelope: Envelope) -> list[dict[str, Any]]:
        """The events of one message, made local; [] (logged once) for one that is not."""
        try:
            bodies = decode_events(envelope, self.accept)
        except BadEvent as exc:
            self._fault(str(exc), envelope)
            return []
        return [self.event_from_message(body)[1] for body in bodies]

    def _fault(self, reason: str, envelope: Envelope) -> None:
        kind = reason.split(":", 1)[0]
        if kind not in self._faults:
            self._faults.add(kind)
            sender = (
                envelope.headers.get("hostname") if isinstance(envelope.headers, dict) else None
            )
            logger.warning("dropped a message on the event exchange (from %s): %s", sender, reason)

    # asyncio ----------------------------------------------------------------------------
    async def aiter_events(
        self, limit: int | None = None, timeout: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield events as they come (after their handler ran); ``limit`` events at most.

        Raises TimeoutError when no event came for ``timeout`` seconds.
        """
        subscription = await self.bus.subscribe(self.routing_key)
        try:
            async for event in self._events(subscription, limit, timeout):
                yield event
        finally:
            await subscription.close()

    async def _events(
        self, subscription: Subscription, limit: int | None, timeout: float | None
    ) -> AsyncIterator[dict[str, Any]]:
        watch = _Watch(limit, timeout)
        while watch.more(self):
            for event in self._dispatch(await subscription.receive(watch.wait()), watch):
                yield event

    def _dispatch(self, envelopes: list[Envelope], watch: _Watch) -> list[dict[str, Any]]:
        """Run the handlers of the events in ``envelopes``, within the watch's limit."""
        watch.arrived(bool(envelopes))
        done: list[dict[str, Any]] = []
        for envelope in envelopes:
            for event in self.events_of(envelope):
                if not watch.more(self):
                    return done
                self.process(event["type"], event)
                watch.seen += 1
                done.append(event)
        return done

    # blocking ---------------------------------------------------------------------------
    def itercapture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Blocking :meth:`aiter_events`; handlers run in the calling thread."""
        del wakeup  # celeriac workers send a heartbeat every freq seconds regardless
        portal = get_portal()
        subscription = portal.run(self.bus.subscribe(self.routing_key))
        try:
            yield from self._blocking(portal, subscription, limit, timeout)
        finally:
            portal.run(subscription.close())

    def _blocking(
        self, portal: Any, subscription: Subscription, limit: int | None, timeout: float | None
    ) -> Iterator[dict[str, Any]]:
        watch = _Watch(limit, timeout)
        while watch.more(self):
            yield from self._dispatch(portal.run(subscription.receive(watch.wait())), watch)

    def capture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True
    ) -> None:
        """Receive and dispatch events until ``limit``, a timeout or ``should_stop``."""
        for _ in self.itercapture(limit=limit, timeout=timeout, wakeup=wakeup):
            pass

    async def aclose(self) -> None:
        """Close the bus."""
        await self.bus.close()


class _Watch:
    """When a capture ends: after ``limit`` events, or ``timeout`` s without one."""

    def __init__(self, limit: int | None, timeout: float | None) -> None:
        self.limit = limit
        self.timeout = timeout
        self.seen = 0
        self._quiet_since = time.monotonic()

    def more(self, receiver: EventReceiver) -> bool:
        """Whether to take another event."""
        return not receiver.should_stop and (self.limit is None or self.seen < self.limit)

    def wait(self) -> float:
        """Seconds the next wait for events may last."""
        if self.timeout is None:
            return _POLL
        left = self._quiet_since + self.timeout - time.monotonic()
        return max(0.0, min(_POLL, left))

    def arrived(self, any_events: bool) -> None:
        """Note a wait's result; raise TimeoutError once ``timeout`` passed without events."""
        now = time.monotonic()
        if any_events:
            self._quiet_since = now
        elif self.timeout is not None and now - self._quiet_since >= self.timeout:
            raise TimeoutError(f"no event in {self.timeout} s")
