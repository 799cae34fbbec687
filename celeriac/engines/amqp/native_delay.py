"""Celery 5.5's native delayed delivery topology, declared so Celery clients' countdowns reach
celeriac workers.

A Celery 5.5+ client sends a countdown or ETA task bound for a quorum queue on a topic or fanout
exchange to the exchange ``celery_delayed_27`` with the routing key ``b27.b26....b0.<key>``
(the whole seconds of the delay in 28 binary words, then the original routing key). The task
waits in the quorum queue ``celery_delayed_<L>`` (TTL ``2**L`` s) of each set bit, is
dead-lettered level by level (exchange-to-exchange bindings skip the levels whose bit is 0)
and reaches ``celery_delayed_delivery``, which the *worker* binds to each queue's exchange with
``#.<key>``. A Celery worker declares all this at start; a celeriac worker consuming such a
queue declares the same (same arguments, so either may come first) and binds its queues the same
way, so a mixed fleet's delayed tasks arrive whichever worker runs. Queues on direct
exchanges are skipped, as Celery does (its client sends those straight to the queue). The
message still carries its ``eta`` header; the worker holds or re-delays it as any ETA task.
"""

from __future__ import annotations

from typing import Any

from aiormq.abc import AbstractChannel

from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import QueueSpec

__all__ = ["DELIVERY_EXCHANGE", "MAX_LEVEL", "NativeDelay", "level_name", "uses_native_delay"]

MAX_LEVEL = 27
DELIVERY_EXCHANGE = "celery_delayed_delivery"


def level_name(level: int) -> str:
    """The exchange and queue of one level."""
    return f"celery_delayed_{level}"


def uses_native_delay(spec: QueueSpec) -> bool:
    """Whether Celery clients send this queue's delayed tasks through the native topology:
    a quorum queue bound to a topic or fanout exchange."""
    return (
        spec.queue_arguments.get("x-queue-type") == "quorum"
        and bool(spec.exchange)
        and spec.exchange_type in ("topic", "fanout")
    )


def _words(level: int, bit: str) -> str:
    """The binding key selecting bit ``level`` = ``bit`` (bit 27 is the first word)."""
    return "*." * (MAX_LEVEL - level) + f"{bit}.#"


class NativeDelay:
    """Declares the levels once per connection and binds queues to the delivery exchange."""

    def __init__(self, queue_type: str) -> None:
        if queue_type not in ("classic", "quorum"):
            raise ImproperlyConfigured(
                "broker_native_delayed_delivery_queue_type must be 'classic' or 'quorum', "
                f"not {queue_type!r}"
            )
        self.queue_type = queue_type
        self._declared = False

    def reset(self) -> None:
        """Declare again on the next use (a new connection)."""
        self._declared = False

    async def bind(self, channel: AbstractChannel, spec: QueueSpec) -> None:
        """Make Celery clients' delayed tasks for ``spec`` arrive in it."""
        if not self._declared:
            await self._declare(channel)
            self._declared = True
        key = spec.routing_key if spec.routing_key.startswith("#") else f"#.{spec.routing_key}"
        await channel.exchange_bind(
            destination=spec.exchange, source=DELIVERY_EXCHANGE, routing_key=key
        )
        await channel.queue_bind(spec.name, spec.exchange, routing_key=key)

    async def _declare(self, channel: AbstractChannel) -> None:
        for level in range(MAX_LEVEL, -1, -1):
            name = level_name(level)
            await channel.exchange_declare(name, exchange_type="topic", durable=True)
            arguments: dict[str, Any] = {
                "x-queue-type": self.queue_type,
                "x-overflow": "reject-publish",
                "x-message-ttl": 2**level * 1000,
                "x-dead-letter-exchange": level_name(level - 1) if level else DELIVERY_EXCHANGE,
            }
            if self.queue_type == "quorum":
                arguments["x-dead-letter-strategy"] = "at-least-once"
            await channel.queue_declare(name, durable=True, arguments=arguments)
            await channel.queue_bind(name, name, routing_key=_words(level, "1"))
        await channel.exchange_declare(DELIVERY_EXCHANGE, exchange_type="topic", durable=True)
        for level in range(MAX_LEVEL, 0, -1):
            await channel.exchange_bind(
                destination=level_name(level - 1),
                source=level_name(level),
                routing_key=_words(level, "0"),
            )
        await channel.exchange_bind(
            destination=DELIVERY_EXCHANGE, source=level_name(0), routing_key=_words(0, "0")
        )
