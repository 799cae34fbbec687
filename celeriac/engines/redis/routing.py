"""Exchange emulation of the Redis transport over kombu's binding sets (SPEC §3.3, §3.6).

The default exchange ``""`` delivers to the list named by the routing key. A named exchange's
bindings are the members ``routing_key SEP pattern SEP queue`` of ``_kombu.binding.<exchange>``:
direct matches the key exactly, topic with AMQP wildcards (the pattern field is kombu's regex,
written for kombu's sake and not read here). Types of exchanges declared by celeriac are kept
in ``celeriac:exchanges`` so every instance routes alike; an exchange only kombu declared is
topic if its bindings carry patterns, else direct. Fanout exchanges deliver a list copy to the
celeriac queues bound to them (``celeriac:fanout:<exchange>``) and are also ``PUBLISH``ed on
kombu's channel for Celery workers and Flower; Celery's own broadcast queues get no list copy,
which nobody would read. kombu has no headers exchange, and neither has this transport.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from celeriac.engines.redis.keys import RedisKeys
from celeriac.protocol import kombu
from celeriac.transport.base import Outgoing, QueueSpec
from celeriac.transport.exchanges import topic_matches

__all__ = ["SUPPORTED_TYPES", "Route", "Router"]

logger = logging.getLogger("celeriac.engines.redis.broker")

SUPPORTED_TYPES = frozenset({"direct", "topic", "fanout"})


@dataclass(frozen=True, slots=True)
class Route:
    """What a named exchange routes to: its type, kombu bindings and celeriac fanout queues."""

    kind: str
    table: list[kombu.Binding]
    fanout: list[str]


class Router:
    """Declares bindings and resolves where published messages go."""

    def __init__(self, keys: RedisKeys, db: int, fanout_exchanges: Iterable[str]) -> None:
        self.keys = keys
        self.db = db
        self.types: dict[str, str] = dict.fromkeys(fanout_exchanges, "fanout")

    def declare(self, pipe: Any, specs: Sequence[QueueSpec]) -> None:
        """Queue on ``pipe`` the binding writes kombu makes, plus celeriac's type records."""
        for spec in specs:
            if spec.exchange_type not in SUPPORTED_TYPES:
                raise NotImplementedError(
                    f"{spec.exchange_type} exchanges are not supported on Redis (nor by kombu)"
                )
        for spec in specs:
            exchange, kind = spec.exchange or spec.name, spec.exchange_type
            self.types[exchange] = kind
            rk = spec.routing_key or ("" if kind == "fanout" else spec.name)
            member = kombu.binding_member(rk, spec.name, topic=kind == "topic")
            pipe.sadd(self.keys.binding(exchange), member)
            pipe.sadd(self.keys.binding_permanent(exchange), member)
            pipe.hset(self.keys.exchanges, exchange, kind)
            if kind == "fanout":
                pipe.sadd(self.keys.fanout(exchange), spec.name)

    async def load(self, client: Any, messages: Sequence[Outgoing]) -> dict[str, Route]:
        """Type and bindings of each named exchange in ``messages`` (one round trip)."""
        names = sorted({m.exchange for m in messages if m.exchange})
        if not names:
            return {}
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.exchanges, name)
            pipe.smembers(self.keys.binding(name))
            pipe.smembers(self.keys.fanout(name))
        replies = await pipe.execute()
        routes: dict[str, Route] = {}
        for i, name in enumerate(names):
            kind_raw, members, fanout = replies[3 * i : 3 * i + 3]
            parsed = [kombu.parse_binding(member) for member in members]
            table = [b for b in parsed if b is not None and b.queue]
            kind = kind_raw.decode() if kind_raw else self.types.get(name)
            if kind is None:
                kind = "topic" if any(b.pattern for b in table) else "direct"
            routes[name] = Route(kind, table, sorted(q.decode() for q in fanout))
        return routes

    def queues(self, msg: Outgoing, route: Route | None) -> list[str]:
        """Queues a message goes to; empty (and a warning) when unroutable."""
        if route is None:  # the default exchange
            found = [msg.routing_key] if msg.routing_key else []
        elif route.kind == "fanout":
            return route.fanout  # may be none: a broadcast can reach only pub/sub listeners
        elif route.kind == "topic":
            found = [b.queue for b in route.table if topic_matches(b.routing_key, msg.routing_key)]
        else:
            found = [b.queue for b in route.table if b.routing_key == msg.routing_key]
        if not found:
            logger.warning(
                "redis: message to exchange %r with routing key %r matches no queue; dropped",
                msg.exchange,
                msg.routing_key,
            )
        return list(dict.fromkeys(found))

    def fanout_channel(self, msg: Outgoing) -> str:
        """kombu's fanout channel ``/<db>.<exchange>[/<routing key>]``, key prefix included."""
        suffix = f"/{msg.routing_key}" if msg.routing_key else ""
        return f"{self.keys.prefix}/{self.db}.{msg.exchange}{suffix}"
