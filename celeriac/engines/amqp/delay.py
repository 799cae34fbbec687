"""Broker-side delayed delivery for the AMQP transport: a binary ladder of TTL queues.

A message due in ``n`` ticks (``UNIT`` = 0.1 s, rounded up) travels down a ladder of
``LEVELS`` (32) levels and waits at level ``L`` exactly when bit ``L`` of ``n`` is set, for
``2**L`` ticks, so it reaches its queue ``n`` ticks after it was published, never earlier, and
nothing waits in a worker. Like Celery's native delayed delivery (SPEC §4.6) the bits travel in
the routing key, but the waiting queues are per target, so each queue's delayed messages can be
counted and purged, and the target may be any exchange:

* exchanges ``celeriac.delay.<L>`` (topic, durable), L = 31 .. 0, and ``celeriac.delay.out``;
  ``celeriac.delay.<L>`` forwards keys whose bit L is 0 to the next lower level (exchange to
  exchange binding), level 0 forwards them to ``celeriac.delay.out``;
* per target: queue ``celeriac.delay.<L>.<target>`` bound to ``celeriac.delay.<L>`` for keys
  with bit L set, with ``x-message-ttl = 2**L`` ticks and ``x-dead-letter-exchange`` = the next
  lower level (dead-lettering keeps the routing key); queue ``celeriac.delay.out.<target>``
  with ``x-message-ttl 0`` dead-letters at once to the real exchange and routing key
  (``x-dead-letter-exchange`` / ``x-dead-letter-routing-key``), so the message arrives as if
  published there (``exchange``/``routing_key`` of the delivery are the original ones).

The routing key is 32 words ``0``/``1`` (bit 31 first) and then ``<target>``, which is the queue
name for the default exchange and ``<exchange>@<routing key>`` otherwise (a hash when the name
would not fit or contains topic wildcards). A publish goes straight to the exchange of its
highest set bit. Level queues are declared on demand, from level 0 up to the highest level a
message needs, so the levels of a target are always contiguous from 0 (counting stops at the
first missing one). Every level queue holds messages of one TTL, so they expire in order: due
times are kept to the tick. Level queues are lazy (messages on disk) to keep the broker's memory
flat with many delayed messages (100,000 messages due in an hour: +10 MiB broker memory, worker
memory unchanged). The publisher computes each delay as the message is written and sends a
batch in due order, so a long batch does not shuffle due times. It also stamps
``x-celeriac-not-before`` (epoch ms); a consumer that sees a message early (clock skew between
hosts, or a delay beyond the ladder's 13.6 years) sends it down the ladder again.

Limits: ladder queues are classic queues, whose dead-lettering is at most once, so a broker
crash in the middle of a hop can lose a delayed message; and delayed messages to an exchange
other than the default one count towards a queue only when that queue was declared on a
direct exchange with that routing key.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from celeriac.engines.amqp.connection import AbstractChannel
from celeriac.transport.base import QueueSpec

__all__ = [
    "LEVELS",
    "NOT_BEFORE_HEADER",
    "UNIT",
    "DelayLadder",
    "DelayPlan",
    "ceil_div",
    "delay_tokens",
    "level_queue",
    "release_queue",
    "stamp",
    "stamped_not_before",
    "target_token",
]

UNIT = 0.1
LEVELS = 32
NOT_BEFORE_HEADER = "x-celeriac-not-before"
_PREFIX = "celeriac.delay."
_OUT = _PREFIX + "out"
_MAX_TOKEN = 150
_SAFE = re.compile(r"[a-zA-Z0-9\-_.:@,/+ ]+")  # what AMQP clients accept in names

Probe = Callable[[str], Awaitable[int | None]]
"""Message count of a queue, or None when it does not exist."""


def target_token(exchange: str, routing_key: str) -> str:
    """The name part that identifies where delayed messages finally go."""
    raw = f"{exchange}@{routing_key}" if exchange else routing_key
    words = raw.split(".")
    plain = _SAFE.fullmatch(raw) and not any(w in ("", "#") for w in words)
    if plain and len(raw) <= _MAX_TOKEN:
        return raw
    return "h-" + hashlib.sha1(raw.encode()).hexdigest()


def delay_tokens(queue: str, spec: QueueSpec | None) -> list[str]:
    """The targets whose delayed messages end up in ``queue`` (declared as ``spec``, if known).

    The queue itself (default exchange), and its binding when it was declared on a direct
    exchange; delayed messages sent to other exchanges are not attributed to a queue.
    """
    tokens = [target_token("", queue)]
    if spec is not None and spec.exchange and spec.exchange_type == "direct":
        tokens.append(target_token(spec.exchange, spec.routing_key))
    return tokens


def ceil_div(value: float, unit: float) -> int:
    """``ceil(value / unit)``, ignoring float noise (0.5 / 0.1 is 5 units, not 6)."""
    return max(0, math.ceil(value / unit - 1e-9))


def stamp(not_before: float) -> dict[str, Any]:
    """The header carrying a due time, as integer milliseconds (AMQP clients send floats as
    32-bit numbers, far too coarse for an epoch)."""
    return {NOT_BEFORE_HEADER: math.ceil(not_before * 1000)}


def stamped_not_before(headers: Mapping[str, Any]) -> float | None:
    """The due time (epoch seconds) stamped on a message, if any."""
    value = headers.get(NOT_BEFORE_HEADER)
    return value / 1000 if isinstance(value, int) and not isinstance(value, bool) else None


def _exchange(level: int) -> str:
    return _OUT if level < 0 else f"{_PREFIX}{level}"


def level_queue(level: int, token: str) -> str:
    """The queue where messages for ``token`` wait at ``level``."""
    return f"{_PREFIX}{level}.{token}"


def release_queue(token: str) -> str:
    """The zero-TTL queue that hands messages for ``token`` to their real exchange."""
    return f"{_OUT}.{token}"


def _pattern(level: int | None, bit: str) -> str:
    words = ["*"] * LEVELS
    if level is not None:
        words[LEVELS - 1 - level] = bit
    return ".".join(words)


class DelayPlan:
    """Where to publish one delayed message: the entry exchange and the bit-coded key."""

    __slots__ = ("exchange", "routing_key", "token", "top")

    def __init__(self, ticks: int, exchange: str, routing_key: str) -> None:
        ticks = min(ticks, 2**LEVELS - 1)
        self.top = ticks.bit_length() - 1
        self.token = target_token(exchange, routing_key)
        bits = ".".join(str((ticks >> (LEVELS - 1 - i)) & 1) for i in range(LEVELS))
        self.exchange = _exchange(self.top)
        self.routing_key = f"{bits}.{self.token}"

    @classmethod
    def for_delay(cls, seconds: float, exchange: str, routing_key: str) -> DelayPlan | None:
        """The plan for a message due in ``seconds``; None when it is due now."""
        ticks = ceil_div(seconds, UNIT)
        return cls(ticks, exchange, routing_key) if ticks > 0 else None


class DelayLadder:
    """Declares the ladder on demand and counts or purges a target's waiting messages."""

    def __init__(self) -> None:
        self._shared = False
        self._levels: dict[str, int] = {}
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """Forget what was declared (after a reconnect, declarations are checked again)."""
        self._shared = False
        self._levels.clear()

    async def ensure(
        self, channel: AbstractChannel, plan: DelayPlan, exchange: str, routing_key: str
    ) -> None:
        """Declare the shared exchanges and this target's levels up to ``plan.top``."""
        async with self._lock:
            if not self._shared:
                await self._declare_shared(channel)
                self._shared = True
            have = self._levels.get(plan.token, -1)
            if have >= plan.top:
                return
            if have < 0:
                await self._declare_release(channel, plan.token, exchange, routing_key)
            for level in range(have + 1, plan.top + 1):
                await self._declare_level(channel, plan.token, level)
            self._levels[plan.token] = plan.top

    async def _declare_shared(self, channel: AbstractChannel) -> None:
        await channel.exchange_declare(_OUT, exchange_type="topic", durable=True)
        for level in range(LEVELS):
            await channel.exchange_declare(_exchange(level), exchange_type="topic", durable=True)
        for level in range(LEVELS):
            await channel.exchange_bind(
                destination=_exchange(level - 1),
                source=_exchange(level),
                routing_key=_pattern(level, "0") + ".#",
            )

    async def _declare_release(
        self, channel: AbstractChannel, token: str, exchange: str, routing_key: str
    ) -> None:
        name = release_queue(token)
        arguments: dict[str, Any] = {
            "x-message-ttl": 0,
            "x-dead-letter-exchange": exchange,
            "x-dead-letter-routing-key": routing_key,
        }
        await channel.queue_declare(name, durable=True, arguments=arguments)
        await channel.queue_bind(name, _OUT, routing_key=f"{_pattern(None, '*')}.{token}")

    async def _declare_level(self, channel: AbstractChannel, token: str, level: int) -> None:
        name = level_queue(level, token)
        arguments: dict[str, Any] = {
            "x-message-ttl": round((2**level) * UNIT * 1000),
            "x-dead-letter-exchange": _exchange(level - 1),
            "x-queue-mode": "lazy",
        }
        await channel.queue_declare(name, durable=True, arguments=arguments)
        await channel.queue_bind(
            name, _exchange(level), routing_key=f"{_pattern(level, '1')}.{token}"
        )

    async def existing_levels(self, probe: Probe, token: str) -> list[tuple[str, int]]:
        """(queue, message count) of every declared level of ``token``, lowest first."""
        if await probe(release_queue(token)) is None:
            return []
        found: list[tuple[str, int]] = []
        for level in range(LEVELS):
            name = level_queue(level, token)
            count = await probe(name)
            if count is None:
                break
            found.append((name, count))
        return found

    async def count(self, probe: Probe, token: str) -> int:
        """Messages waiting anywhere on the ladder for ``token``."""
        return sum(count for _, count in await self.existing_levels(probe, token))

    async def purge(
        self, probe: Probe, admin: Callable[[], Awaitable[AbstractChannel]], token: str
    ) -> int:
        """Delete the messages waiting on the ladder for ``token``; return how many."""
        total = 0
        for name, _ in await self.existing_levels(probe, token):
            ok = await (await admin()).queue_purge(name)
            total += int(ok.message_count or 0)
        return total
