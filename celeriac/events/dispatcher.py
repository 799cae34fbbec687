"""Send events without a broker call per event: a buffer, flushed in batches off the hot path.

:meth:`EventDispatcher.send` only builds the event and appends it to a buffer (no I/O, no
coroutine); a background task publishes what the buffer holds every :data:`LINGER`
seconds, in one :meth:`~celeriac.events.bus.EventBus.publish` call: each event of a
group not batched (``worker-*``, ``task-sent``) as its own message, the events of each
batched group (``task``) as one ``task.multi`` message holding a list, as Celery's
worker does (SPEC §6.1).

Broker outages. Events are not durable (fire and forget, as in Celery): a monitor
catches up from the next heartbeat. While the bus retries a publish (the broker's
reconnect policy, :mod:`celeriac.reconnect`; RabbitMQ retries up to its deadline, Redis
fails at once) new events wait in the buffer, up to :data:`BUFFER_LIMIT`; past it, new
events are dropped. A publish that fails drops its events. Either way the worker goes on
running tasks: :meth:`send` never waits and never raises. Each outage is logged once
("events: broker ... unreachable, retrying"), and its end once with the count of events
dropped ("... back after N s", "N events dropped during the outage").

``groups`` restricts what is sent (``{"worker"}`` without ``-E``), as Celery's
``EventDispatcher(groups=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Collection, Sequence
from typing import Any

from celeriac.events.bus import EventBus, Published, encode_events
from celeriac.events.event import LamportClock, routing_key_for, utcoffset
from celeriac.masking import mask_url
from celeriac.reconnect import Outage

__all__ = ["BATCH_LIMIT", "BUFFER_LIMIT", "LINGER", "EventDispatcher"]

logger = logging.getLogger("celeriac.events")

LINGER = 0.1
"""Seconds events wait in the buffer for more to travel with them."""

BATCH_LIMIT = 500
"""Events of one group in one ``<group>.multi`` message at most."""

BUFFER_LIMIT = 10_000
"""Events held while a publish is under way (the broker may be away); newer are dropped."""


class EventDispatcher:
    """Buffers events and publishes them in batches (see the module docstring).

    Bound to the running event loop; :meth:`send` must be called in its thread
    (:meth:`send_threadsafe` from any other).
    """

    def __init__(
        self,
        bus: EventBus,
        hostname: str,
        *,
        serializer: str = "json",
        groups: Collection[str] | None = None,
        batched: Collection[str] = ("task",),
        enabled: bool = True,
        clock: LamportClock | None = None,
        linger: float = LINGER,
    ) -> None:
        self.bus = bus
        self.hostname = hostname
        self.serializer = serializer
        self.groups: set[str] = set(groups or ())
        """Groups sent (all when empty)."""
        self.batched = frozenset(batched)
        self.enabled = enabled
        self.clock = clock or LamportClock()
        self.linger = linger
        self.pid = os.getpid()
        self.sent = 0
        """Events handed to the bus so far."""
        self._singles: list[dict[str, Any]] = []
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._held = 0
        self._pending = asyncio.Event()
        self._woken = False
        self._utcoffset = utcoffset()
        self._flusher: asyncio.Task[None] | None = None
        self.dropped = 0
        """Events dropped so far (a full buffer, or a publish that failed)."""
        self._dropped_before = 0
        self.outage = Outage(logger, f"events: broker {mask_url(str(getattr(bus, 'url', '')))}")
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # sending ----------------------------------------------------------------------------
    def sends(self, group: str) -> bool:
        """Whether events of ``group`` are sent now."""
        return self.enabled and (not self.groups or group in self.groups)

    def send(self, type: str, **fields: Any) -> None:
        """Queue an event of ``type``; it is published with the next batch.

        The hot path of a worker with task events: one dict update and one append.
        """
        group = type.partition("-")[0]
        if not self.enabled or (self.groups and group not in self.groups):
            return
        fields.update(
            hostname=self.hostname,
            utcoffset=self._utcoffset,
            pid=self.pid,
            clock=self.clock.forward(),
            timestamp=time.time(),
            type=type,
        )
        if self._held >= BUFFER_LIMIT:  # a publish is stuck: bound the memory held
            self._drop(1)
            return
        if group in self.batched:
            self._batches.setdefault(group, []).append(fields)
        else:
            self._singles.append(fields)
        self._held += 1
        if not self._woken:
            self._wake()

    def send_threadsafe(self, type: str, **fields: Any) -> None:
        """:meth:`send` from a thread other than the loop's."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: self.send(type, **fields))

    def _wake(self) -> None:
        if self._flusher is None and not self._closing:
            self._start()
        self._woken = True
        self._pending.set()

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flusher = self._loop.create_task(self._run(), name="celeriac-events-flush")

    def start(self) -> None:
        """Bind to the running loop (so :meth:`send_threadsafe` works before any send)."""
        if self._flusher is None and not self._closing:
            self._start()

    @property
    def buffered(self) -> int:
        """Events waiting for the next flush."""
        return self._held

    def _drop(self, count: int) -> None:
        if self.dropped == self._dropped_before:
            logger.warning("events: %d events dropped (events are not durable)", count)
        self.dropped += count

    # flushing ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closing:
            await self._pending.wait()
            if not self._closing:
                await asyncio.sleep(self.linger)
            await self.flush()

    async def flush(self) -> None:
        """Publish everything buffered now, in one call to the bus."""
        self._pending.clear()
        self._woken = False
        self._utcoffset = utcoffset()  # (daylight saving time may have begun)
        held = self._held
        try:
            messages = self._take()
            if not messages:
                return
            await self.bus.publish(messages)
        except Exception as exc:  # encoding or publishing: the events are dropped
            self.outage.failed(exc)
            self._drop(held)
            return
        if self.outage.ok() is not None or self.dropped != self._dropped_before:
            if self.dropped != self._dropped_before:
                logger.warning(
                    "events: %d events dropped during the outage",
                    self.dropped - self._dropped_before,
                )
            self._dropped_before = self.dropped
        self.sent += len(messages)

    def _take(self) -> list[Published]:
        singles, batches = self._singles, self._batches
        self._singles, self._batches = [], {}
        self._held = 0
        messages = [
            Published(routing_key_for(e["type"]), encode_events(e, self.hostname, self.serializer))
            for e in singles
        ]
        for group, events in batches.items():
            messages.extend(self._multi(group, events))
        return messages

    def _multi(self, group: str, events: Sequence[dict[str, Any]]) -> list[Published]:
        key = f"{group}.multi"
        return [
            Published(
                key,
                encode_events(list(events[i : i + BATCH_LIMIT]), self.hostname, self.serializer),
            )
            for i in range(0, len(events), BATCH_LIMIT)
        ]

    async def close(self) -> None:
        """Publish what is buffered (a publish under way finishes first), stop, close the bus."""
        self._closing = True
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            self._pending.set()
            await flusher  # it flushes once more and ends
        else:
            await self.flush()
        await self.bus.close()
