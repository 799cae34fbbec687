"""What the two brokers on this host (memory and SQLite) share besides routing.

Both keep their messages where every consumer on the host reaches them directly, so
both lease deliveries the same way and wait the same way:

* :class:`Doorbell` wakes the fetches waiting on any event loop, from any thread;
* :class:`LeaseOptions` reads ``lease_timeout``, ``heartbeat_interval`` and
  ``poll_interval`` from ``broker_transport_options``;
* :class:`LocalConsumer` is one transport instance's consumer: its id, the fetch that
  claims or waits (for the doorbell, the next due message or the timeout, whichever
  comes first), the queue rotation, and the heartbeat that keeps its leases alive and
  sweeps the leases of consumers that died.

Each broker supplies only its I/O: how to claim, and how to beat.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from celeriac import clock
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import Delivery, Rotation

__all__ = ["Claim", "Doorbell", "LeaseOptions", "LocalConsumer"]

log = logging.getLogger(__name__)

Claim = Callable[[list[str], int, bool], Awaitable[tuple[list[Delivery], float | None]]]
"""``claim(queues, limit, sweep)``: lease up to ``limit`` due deliveries from ``queues`` (in
that order), first sweeping lost consumers' leases when ``sweep``; return them and, when
there were none, the epoch time the next delayed message is due (None: nothing delayed)."""


class Doorbell:
    """Wakes asyncio waiters on any event loop, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Have ``event`` (used on ``loop``) set on every ring."""
        with self._lock:
            self._waiters.add((loop, event))

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Stop setting ``event``."""
        with self._lock:
            self._waiters.discard((loop, event))

    def ring(self) -> None:
        """Set every subscribed event on its own loop; forget loops that are closed."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: its consumer is gone
                self.unsubscribe(loop, event)


@dataclass(frozen=True, slots=True)
class LeaseOptions:
    """Lease and polling settings read from ``broker_transport_options``.

    ``heartbeat_interval`` defaults to a third of ``lease_timeout`` and is capped at half
    of it, so one late heartbeat never lets a live consumer's lease expire.
    """

    lease_timeout: float = 30.0
    heartbeat_interval: float = 10.0
    poll_interval: float = 0.01

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> LeaseOptions:
        """Read the recognised options; unknown ones are ignored."""
        opts = dict(options or {})
        lease = float(opts.get("lease_timeout", 30.0))
        beat = float(opts.get("heartbeat_interval", lease / 3))
        poll = float(opts.get("poll_interval", 0.01))
        if lease <= 0 or beat <= 0 or poll <= 0:
            raise ImproperlyConfigured(
                "broker_transport_options: lease_timeout, heartbeat_interval and "
                "poll_interval must be positive"
            )
        return cls(lease, min(beat, lease / 2), poll)


class LocalConsumer:
    """One transport instance's consumer of a broker on this host.

    ``beat()`` renews this consumer's lease and sweeps lost consumers' leases; it runs
    every ``heartbeat_interval`` once the first delivery was fetched, until :meth:`close`.
    ``label`` names the transport in logs and in :func:`repr`.
    """

    def __init__(
        self, options: LeaseOptions, *, beat: Callable[[], Awaitable[None]], label: str
    ) -> None:
        self.options = options
        self.id = uuid.uuid4().hex
        self.wake = asyncio.Event()
        self.closed = False
        self._beat = beat
        self._label = label
        self._rotation = Rotation()
        self._last_sweep = float("-inf")
        self._heartbeat: asyncio.Task[None] | None = None
        self._bell: tuple[Doorbell, asyncio.AbstractEventLoop] | None = None

    def __repr__(self) -> str:
        return f"<{self._label} consumer={self.id[:8]}>"

    def attach(self, bell: Doorbell) -> None:
        """Listen to ``bell`` on the running loop (again open after :meth:`close`)."""
        self.closed = False
        if self._bell is None:
            loop = asyncio.get_running_loop()
            bell.subscribe(loop, self.wake)
            self._bell = (bell, loop)

    async def close(self) -> None:
        """End a waiting fetch (it returns empty), stop the heartbeat and the doorbell."""
        self.closed = True
        self.wake.set()
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._bell is not None:
            bell, loop = self._bell
            bell.unsubscribe(loop, self.wake)
            self._bell = None

    def sweep_due(self) -> bool:
        """True (and the sweep clock restarted) when lost consumers should be swept now."""
        now = time.monotonic()
        if now - self._last_sweep < self.options.heartbeat_interval:
            return False
        self._last_sweep = now
        return True

    async def fetch(
        self,
        queues: Sequence[str],
        limit: int,
        timeout: float,
        claim: Claim,
        *,
        idle: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> list[Delivery]:
        """Claim up to ``limit`` deliveries, waiting up to ``timeout`` s for one.

        ``idle()`` is entered while the fetch waits (SQLite watches the file for commits
        of other processes then).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        names = list(dict.fromkeys(queues))
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self.closed:
            self.wake.clear()
            got, next_due = await claim(self._rotation.order(names), limit, self.sweep_due())
            if got:
                self._start_heartbeat()
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self._sleep(remaining, next_due, idle)
        return []

    async def _sleep(
        self,
        remaining: float,
        next_due: float | None,
        idle: Callable[[], AbstractContextManager[object]],
    ) -> None:
        """Sleep until woken, something is due, the timeout ends or a sweep is due."""
        budget = min(remaining, self.options.heartbeat_interval)
        if next_due is not None:
            budget = min(budget, max(next_due - clock.wall(), 0.0))
        if budget <= 0:
            return
        with idle():
            try:
                async with asyncio.timeout(budget):
                    await self.wake.wait()
            except TimeoutError:
                pass

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat_forever(), name=f"{self!r} heartbeat")

    async def _beat_forever(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.options.heartbeat_interval)
            try:
                await self._beat()
            except Exception:  # a locked or busy file: try again next interval
                log.exception("%r: heartbeat failed", self)
                continue
            self._last_sweep = time.monotonic()
