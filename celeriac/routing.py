"""Queues, exchanges and ``task_routes``: where a task message is published.

``Exchange`` and ``Queue`` mirror kombu's objects (kombu's own are accepted too).
Routing resolves a task name plus ``apply_async`` options into an exchange, a
routing key and the queue spec to declare, the way Celery does: explicit options
first, then ``task_routes`` (dicts, glob or regex patterns, router functions),
then the task's own ``queue``, then ``task_default_queue``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celeriac.exceptions import QueueNotFound
from celeriac.transport.base import QueueSpec

__all__ = ["Exchange", "Queue", "Route", "Router", "queue_spec"]


class Exchange:
    """An AMQP exchange: a name and a type (``direct``, ``topic``, ``fanout``, ``headers``)."""

    def __init__(
        self, name: str = "", type: str = "direct", durable: bool = True, **_: Any
    ) -> None:
        self.name = name
        self.type = type
        self.durable = durable

    def __repr__(self) -> str:
        return f"Exchange({self.name!r}, type={self.type!r})"


class Queue:
    """A queue bound to an exchange with a routing key (kombu's ``Queue``)."""

    def __init__(
        self,
        name: str = "",
        exchange: Exchange | str | None = None,
        routing_key: str | None = None,
        *,
        queue_arguments: Mapping[str, Any] | None = None,
        max_priority: int | None = None,
        durable: bool = True,
        **_: Any,
    ) -> None:
        self.name = name
        self.exchange = exchange if isinstance(exchange, Exchange) else Exchange(exchange or name)
        self.routing_key = routing_key if routing_key is not None else name
        self.queue_arguments = dict(queue_arguments or {})
        self.max_priority = max_priority
        self.durable = durable

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, exchange={self.exchange!r}, routing_key={self.routing_key!r})"


def queue_spec(queue: Any) -> QueueSpec:
    """Turn a celeriac or kombu ``Queue`` into the transport's QueueSpec."""
    exchange = getattr(queue, "exchange", None)
    arguments = dict(getattr(queue, "queue_arguments", None) or {})
    max_priority = getattr(queue, "max_priority", None) or arguments.get("x-max-priority")
    return QueueSpec(
        name=str(queue.name),
        exchange=str(getattr(exchange, "name", "") or ""),
        exchange_type=str(getattr(exchange, "type", "direct") or "direct"),
        routing_key=str(getattr(queue, "routing_key", None) or queue.name),
        max_priority=int(max_priority) if max_priority is not None else None,
        durable=bool(getattr(queue, "durable", True)),
        queue_arguments=arguments,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """Where to publish: exchange and routing key, plus the queue to declare (if known)."""

    exchange: str
    routing_key: str
    queue: QueueSpec | None


RouterFn = Callable[..., Any]


def _compile_routes(routes: Any) -> list[RouterFn]:
    """Normalise ``task_routes`` into functions ``(name, args, kwargs, options) -> dict|None``."""
    if routes is None:
        return []
    items: Iterable[Any] = routes if isinstance(routes, list | tuple) else [routes]
    compiled: list[RouterFn] = []
    for item in items:
        if callable(item):
            compiled.append(item)
        elif isinstance(item, Mapping):
            compiled.append(_mapping_router(item))
        elif isinstance(item, str):
            compiled.append(_import_router(item))
        else:
            raise TypeError(f"task_routes entry must be a dict or a function, got {item!r}")
    return compiled


def _import_router(path: str) -> RouterFn:
    module, _, attr = path.rpartition(".")
    obj: Any = getattr(__import__(module, fromlist=[attr]), attr)
    return obj() if isinstance(obj, type) else obj  # type: ignore[no-any-return]


def _matcher(key: Any) -> Callable[[str], bool]:
    """A name test for one ``task_routes`` key: a regex, a glob or an exact name."""
    if isinstance(key, re.Pattern):
        return lambda name: key.match(name) is not None
    if any(ch in str(key) for ch in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, str(key))
    return lambda name: name == key


class _MappingRouter:
    """A ``task_routes`` dict: the destination depends on the task name only."""

    def __init__(self, mapping: Mapping[Any, Any]) -> None:
        self.patterns = [(_matcher(key), value) for key, value in mapping.items()]

    def __call__(self, name: str, *_: Any, **__: Any) -> Any:
        for matches, value in self.patterns:
            if matches(name):
                return value
        return None


def _mapping_router(mapping: Mapping[Any, Any]) -> RouterFn:
    return _MappingRouter(mapping)


class Router:
    """Resolves a task's destination from options, routes and defaults."""

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.default_queue: str = conf["task_default_queue"]
        self.default_exchange: str = conf["task_default_exchange"] or self.default_queue
        self.default_exchange_type: str = conf["task_default_exchange_type"]
        self.default_routing_key: str = conf["task_default_routing_key"] or self.default_queue
        self.max_priority: int | None = conf["task_queue_max_priority"]
        self.create_missing: bool = bool(conf["task_create_missing_queues"])
        self.queues: dict[str, QueueSpec] = {}
        for queue in conf["task_queues"] or ():
            spec = queue_spec(queue)
            self.queues[spec.name] = spec
        self._routes = _compile_routes(conf["task_routes"])
        self.by_name_only = all(isinstance(route, _MappingRouter) for route in self._routes)
        """True when no router function is configured: a route depends on the task name
        and the route options only, never on the arguments, so it can be cached."""

    def default_queue_spec(self) -> QueueSpec:
        """The queue used when nothing else routes a task."""
        return self.queue_named(self.default_queue)

    def queue_named(self, name: str) -> QueueSpec:
        """The configured queue of that name, or one bound like Celery's missing queues
        (QueueNotFound instead when ``task_create_missing_queues`` is False)."""
        if name in self.queues:
            return self.queues[name]
        if not self.create_missing and (self.queues or name != self.default_queue):
            raise QueueNotFound(f"Queue {name!r} missing from task_queues")
        exchange = self.default_exchange if name == self.default_queue else name
        routing_key = self.default_routing_key if name == self.default_queue else name
        return QueueSpec(
            name=name,
            exchange=exchange,
            exchange_type=self.default_exchange_type,
            routing_key=routing_key,
            max_priority=self.max_priority,
        )

    def consume_specs(self, names: Sequence[str] | None) -> list[QueueSpec]:
        """The queues a worker consumes: ``-Q`` names, else all of task_queues, else the default."""
        if names:
            return [self.queue_named(name) for name in names]
        if self.queues:
            return list(self.queues.values())
        return [self.default_queue_spec()]

    def route(self, task_name: str, args: Any, kwargs: Any, options: Mapping[str, Any]) -> Route:
        """Resolve the destination of one publish."""
        merged = dict(self._from_routes(task_name, args, kwargs, options))
        merged.update({k: v for k, v in options.items() if v is not None})
        queue = merged.get("queue")
        exchange = merged.get("exchange")
        routing_key = merged.get("routing_key")
        if queue is not None and not isinstance(queue, str):
            queue = queue_spec(queue).name
        if exchange is not None and not isinstance(exchange, str):
            exchange = getattr(exchange, "name", "")
        if exchange is not None and routing_key is not None:
            spec = self.queues.get(queue) if queue else None
            return Route(exchange=str(exchange), routing_key=str(routing_key), queue=spec)
        spec = self.queue_named(queue or self.default_queue)
        if spec.exchange_type == "direct" or not spec.exchange:
            # Celery publishes direct-routed tasks to the default exchange, keyed by queue name.
            return Route(exchange="", routing_key=spec.name, queue=spec)
        return Route(
            exchange=spec.exchange, routing_key=routing_key or spec.routing_key, queue=spec
        )

    def _from_routes(
        self, name: str, args: Any, kwargs: Any, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        for router in self._routes:
            try:
                found = router(name, args, kwargs, options, task=None)
            except TypeError:
                found = router(name, args, kwargs, options)
            if found:
                return {"queue": found} if isinstance(found, str) else found
        return {}
