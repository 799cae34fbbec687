"""Exchange and binding resolution shared by the memory and SQLite transports.

Pure functions and a small table, no I/O: given the bindings an exchange has, which
queues receive a message published there with a routing key and headers. The rules
are AMQP 0-9-1's (as RabbitMQ implements them):

* the default exchange ``""`` delivers to the queue named by the routing key;
* ``direct`` delivers to queues bound with exactly the routing key;
* ``topic`` matches dot-separated words, ``*`` is exactly one word, ``#`` zero or more;
* ``fanout`` delivers to every bound queue, ignoring the key;
* ``headers`` matches the message headers against the binding arguments, all of them
  (``x-match: all``, the default) or at least one (``x-match: any``); arguments whose
  name starts with ``x-`` are not compared unless ``x-match`` ends in ``-with-x``.
  A binding argument whose value is ``None`` only asks for the header to be present.

``QueueSpec`` has no separate field for binding arguments, so for a headers exchange
they are read from ``queue_arguments`` (see :func:`binding_arguments`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import QueueSpec

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "RoutingTable",
    "binding_arguments",
    "binding_for",
    "headers_match",
    "route",
    "topic_matches",
]

EXCHANGE_TYPES = frozenset({"direct", "topic", "fanout", "headers"})

_MATCH_MODES = frozenset({"all", "any", "all-with-x", "any-with-x"})


@dataclass(frozen=True, slots=True)
class Binding:
    """One queue bound to a named exchange with a key (and arguments for headers)."""

    exchange: str
    queue: str
    routing_key: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)


def _words(key: str) -> list[str]:
    # RabbitMQ treats the empty key as zero words, so "#" matches it and "*" does not.
    return key.split(".") if key else []


def _skip_hashes(states: set[int], pattern: Sequence[str]) -> set[int]:
    """Add the positions reachable by letting each ``#`` match zero words."""
    out = set(states)
    stack = list(states)
    while stack:
        pos = stack.pop()
        if pos < len(pattern) and pattern[pos] == "#" and pos + 1 not in out:
            out.add(pos + 1)
            stack.append(pos + 1)
    return out


@lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when an AMQP topic binding ``pattern`` matches ``routing_key``."""
    pat = _words(pattern)
    # A set of pattern positions (an NFA walk): linear, no exponential backtracking on "#.#.#".
    states = _skip_hashes({0}, pat)
    for word in _words(routing_key):
        nxt: set[int] = set()
        for pos in states:
            if pos >= len(pat):
                continue
            if pat[pos] == "#":
                nxt.add(pos)
            elif pat[pos] == "*" or pat[pos] == word:
                nxt.add(pos + 1)
        states = _skip_hashes(nxt, pat)
        if not states:
            return False
    return len(pat) in states


def headers_match(arguments: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
    """True when message ``headers`` satisfy a headers-exchange binding's ``arguments``."""
    mode = str(arguments.get("x-match", "all")).lower()
    if mode not in _MATCH_MODES:
        raise ImproperlyConfigured(f"headers exchange: unknown x-match {mode!r}")
    with_x = mode.endswith("-with-x")
    wanted = {
        key: value
        for key, value in arguments.items()
        if key != "x-match" and (with_x or not key.startswith("x-"))
    }
    results = (
        key in headers and (value is None or headers[key] == value) for key, value in wanted.items()
    )
    if mode.startswith("any"):
        return any(results)
    # RabbitMQ: "all" with nothing to compare matches every message.
    return all(results)


def binding_arguments(spec: QueueSpec) -> dict[str, Any]:
    """The binding arguments of ``spec``: for a headers exchange, its ``queue_arguments``.

    Queue-level ``x-`` arguments (``x-max-priority``, ``x-message-ttl``, ...) are left out
    because a headers binding never compares ``x-`` keys other than with ``-with-x``.
    """
    if spec.exchange_type != "headers":
        return {}
    return {
        key: value
        for key, value in spec.queue_arguments.items()
        if key == "x-match" or not key.startswith("x-")
    }


def binding_for(spec: QueueSpec) -> Binding | None:
    """The binding a queue declaration makes (None for the default exchange)."""
    if spec.exchange_type not in EXCHANGE_TYPES:
        raise ImproperlyConfigured(
            f"queue {spec.name!r}: unknown exchange type {spec.exchange_type!r}; "
            f"expected one of {sorted(EXCHANGE_TYPES)}"
        )
    if not spec.exchange:
        return None
    return Binding(spec.exchange, spec.name, spec.routing_key, binding_arguments(spec))


def _binding_matches(
    exchange_type: str, binding: Binding, routing_key: str, headers: Mapping[str, Any]
) -> bool:
    if exchange_type == "direct":
        return binding.routing_key == routing_key
    if exchange_type == "topic":
        return topic_matches(binding.routing_key, routing_key)
    if exchange_type == "fanout":
        return True
    if exchange_type == "headers":
        return headers_match(binding.arguments, headers)
    raise ImproperlyConfigured(f"unknown exchange type {exchange_type!r}")


def route(
    exchange: str,
    exchange_type: str | None,
    routing_key: str,
    headers: Mapping[str, Any],
    bindings: Iterable[Binding],
) -> list[str]:
    """Queue names that receive a message, each once, in binding order.

    ``exchange_type`` is None when the exchange was never declared: nothing is routed
    (AMQP would refuse the publish; we drop it like an unroutable message).
    """
    if not exchange:
        return [routing_key] if routing_key else []
    if exchange_type is None:
        return []
    queues: dict[str, None] = {}
    for binding in bindings:
        if binding.exchange == exchange and _binding_matches(
            exchange_type, binding, routing_key, headers
        ):
            queues[binding.queue] = None
    return list(queues)


class RoutingTable:
    """Declared exchanges and bindings, in memory; not thread-safe (callers lock)."""

    def __init__(self) -> None:
        self.exchange_types: dict[str, str] = {}
        # Lists, not sets: binding arguments are dicts, so bindings are not hashable.
        self._bindings: dict[str, list[Binding]] = {}

    def declare(self, spec: QueueSpec) -> None:
        """Record the exchange and binding ``spec`` declares (idempotent).

        Re-declaring an exchange with another type replaces the type (RabbitMQ would
        refuse; for an embedded store the newest configuration wins).
        """
        binding = binding_for(spec)
        if binding is None:
            return
        self.exchange_types[spec.exchange] = spec.exchange_type
        bound = self._bindings.setdefault(spec.exchange, [])
        if binding not in bound:
            bound.append(binding)

    def unbind(self, spec: QueueSpec) -> None:
        """Forget the binding ``spec`` declared (idempotent); the exchange stays."""
        binding = binding_for(spec)
        if binding is None:
            return
        bound = self._bindings.get(spec.exchange, [])
        if binding in bound:
            bound.remove(binding)

    def route(self, exchange: str, routing_key: str, headers: Mapping[str, Any]) -> list[str]:
        """Queue names a message published to ``exchange`` goes to."""
        return route(
            exchange,
            self.exchange_types.get(exchange),
            routing_key,
            headers,
            self._bindings.get(exchange, ()),
        )
