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
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from celeriac.exceptions import QueueNotFound
from celeriac.transport.base import QueueSpec

__all__ = [
    "WORKER_DIRECT_EXCHANGE",
    "Broadcast",
    "Exchange",
    "Queue",
    "Route",
    "Router",
    "queue_spec",
    "worker_direct",
]


class Exchange:
    """An AMQP exchange: a name and a type (``direct``, ``topic``, ``fanout``, ``headers``)."""

    def __init__(
        self,
        name: str = "",
        type: str = "direct",
        durable: bool = True,
        auto_delete: bool = False,
        **_: Any,
    ) -> None:
        self.name = name
        self.type = type
        self.durable = durable
        self.auto_delete = auto_delete

    def __repr__(self) -> str:
        return f"Exchange({self.name!r}, type={self.type!r})"


class Queue:
    """A queue bound to an exchange with a routing key (kombu's ``Queue``).

    As in kombu, a queue given no exchange has the nameless one and an empty routing key;
    the app then binds it to ``task_default_exchange`` with ``task_default_routing_key``,
    as Celery does.
    """

    def __init__(
        self,
        name: str = "",
        exchange: Exchange | str | None = None,
        routing_key: str | None = "",
        *,
        queue_arguments: Mapping[str, Any] | None = None,
        max_priority: int | None = None,
        durable: bool = True,
        auto_delete: bool = False,
        alias: str | None = None,
        **_: Any,
    ) -> None:
        self.name = name
        self.exchange = exchange if isinstance(exchange, Exchange) else Exchange(exchange or "")
        self.routing_key = routing_key or ""
        self.queue_arguments = dict(queue_arguments or {})
        self.max_priority = max_priority
        self.durable = durable
        self.auto_delete = auto_delete
        self.alias = alias

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, exchange={self.exchange!r}, routing_key={self.routing_key!r})"


class Broadcast(Queue):
    """A queue per consumer on a fanout exchange named ``name`` (kombu's ``Broadcast``).

    Every worker that consumes it gets its own auto-deleted queue ``bcast.<uuid>``, so a
    task sent with ``queue=name`` runs once on each of them.
    """

    def __init__(
        self,
        name: str = "",
        queue: str | None = None,
        unique: bool = False,
        auto_delete: bool = True,
        exchange: Exchange | str | None = None,
        alias: str | None = None,
        **options: Any,
    ) -> None:
        if unique:
            queue = f"{queue or 'bcast'}.{uuid.uuid4()}"
        else:
            queue = queue or f"bcast.{uuid.uuid4()}"
        super().__init__(
            queue,
            exchange if exchange is not None else Exchange(name, type="fanout"),
            auto_delete=auto_delete,
            alias=alias or name,
            **options,
        )


WORKER_DIRECT_EXCHANGE = "C.dq2"


def worker_direct(hostname: str | Queue) -> Queue:
    """The queue that reaches one worker only: ``<hostname>.dq2`` on exchange ``C.dq2``."""
    if isinstance(hostname, Queue):
        return hostname
    return Queue(f"{hostname}.dq2", Exchange(WORKER_DIRECT_EXCHANGE), hostname)


def queue_spec(queue: Any) -> QueueSpec:
    """Turn a celeriac or kombu ``Queue`` into the transport's QueueSpec (no defaults applied)."""
    exchange = getattr(queue, "exchange", None)
    arguments = dict(getattr(queue, "queue_arguments", None) or {})
    max_priority = getattr(queue, "max_priority", None) or arguments.get("x-max-priority")
    return QueueSpec(
        name=str(queue.name),
        exchange=str(getattr(exchange, "name", "") or ""),
        exchange_type=str(getattr(exchange, "type", "") or "direct"),
        routing_key=str(getattr(queue, "routing_key", None) or ""),
        max_priority=int(max_priority) if max_priority is not None else None,
        durable=bool(getattr(queue, "durable", True)),
        auto_delete=bool(getattr(queue, "auto_delete", False)),
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


def _type_arguments(setting: str, kind: str | None) -> dict[str, Any]:
    """The queue arguments of a RabbitMQ queue type named by ``setting`` (as Celery 5.5:
    only ``classic`` and ``quorum``)."""
    if kind and kind != "classic":
        if kind != "quorum":
            raise ValueError(f"{setting} must be 'classic' or 'quorum', not {kind!r}")
        return {"x-queue-type": "quorum"}
    return {}


class Router:
    """Resolves a task's destination from options, routes and defaults, as Celery does.

    The queue table follows Celery's ``app.amqp.queues``: a configured queue with no
    exchange gets ``task_default_exchange`` and no routing key ``task_default_routing_key``;
    the default queue is bound to those only when ``task_queues`` is empty; any other
    queue not configured is created bound to a direct exchange of its own name.
    """

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.default_queue: str = conf["task_default_queue"]
        self.default_exchange: str = conf["task_default_exchange"] or self.default_queue
        self.default_exchange_type: str = conf["task_default_exchange_type"]
        self.default_routing_key: str = conf["task_default_routing_key"] or self.default_queue
        self.max_priority: int | None = conf["task_queue_max_priority"]
        self.create_missing: bool = bool(conf["task_create_missing_queues"])
        self.missing_queue_type: str | None = conf["task_create_missing_queue_type"]
        self.default_queue_type: str | None = conf["task_default_queue_type"]
        self.missing_exchange_type: str | None = conf["task_create_missing_queue_exchange_type"]
        self.queues: dict[str, QueueSpec] = {}
        self.aliases: dict[str, QueueSpec] = {}
        self.broadcast: set[str] = set()
        for queue in conf["task_queues"] or ():
            self.add(queue)
        self.configured = list(self.queues.values())
        """What a worker consumes with no -Q: task_queues, not the queues made on demand
        later (Celery's ``_default_consume_from``)."""
        self._routes = _compile_routes(conf["task_routes"])
        self.by_name_only = all(isinstance(route, _MappingRouter) for route in self._routes)
        """True when no router function is configured: a route depends on the task name
        and the route options only, never on the arguments, so it can be cached."""

    def add(self, queue: Any) -> QueueSpec:
        """Add a ``Queue`` to the table with Celery's defaults filled in; return its spec."""
        spec = self._with_defaults(queue_spec(queue))
        self.queues[spec.name] = spec
        alias = getattr(queue, "alias", None)
        if alias:
            self.aliases[str(alias)] = spec
        if isinstance(queue, Broadcast) or type(queue).__name__ == "Broadcast":
            self.broadcast.add(spec.name)
        return spec

    def _with_defaults(self, spec: QueueSpec) -> QueueSpec:
        if not spec.exchange:
            spec = replace(
                spec, exchange=self.default_exchange, exchange_type=self.default_exchange_type
            )
        if not spec.routing_key:
            spec = replace(spec, routing_key=self.default_routing_key)
        if spec.max_priority is None and self.max_priority is not None:
            spec = replace(spec, max_priority=self.max_priority)
        return spec

    def default_queue_spec(self) -> QueueSpec:
        """The queue used when nothing else routes a task."""
        return self.queue_named(self.default_queue)

    def queue_named(self, name: str) -> QueueSpec:
        """The configured queue of that name (or alias), or one made like Celery's missing
        queues (QueueNotFound instead when ``task_create_missing_queues`` is False)."""
        found = self.aliases.get(name) or self.queues.get(name)
        if found is not None:
            return found
        if not self.queues and name == self.default_queue:
            return self.add(
                Queue(
                    name,
                    Exchange(self.default_exchange, self.default_exchange_type),
                    self.default_routing_key,
                    queue_arguments=_type_arguments(
                        "task_default_queue_type", self.default_queue_type
                    ),
                )
            )
        if not self.create_missing:
            raise QueueNotFound(f"Queue {name!r} missing from task_queues")
        exchange = Exchange(name, self.missing_exchange_type or "direct")
        return self.add(Queue(name, exchange, name, queue_arguments=self._missing_arguments()))

    def _missing_arguments(self) -> dict[str, Any]:
        return _type_arguments("task_create_missing_queue_type", self.missing_queue_type)

    def consume_specs(
        self, names: Sequence[str] | None, exclude: Sequence[str] = ()
    ) -> list[QueueSpec]:
        """The queues a worker consumes: ``-Q`` names, else all of task_queues, else the
        default; less the ``-X`` names."""
        if names:
            specs = [self.queue_named(name) for name in names]
        elif self.configured:
            specs = list(self.configured)
        else:
            specs = [self.default_queue_spec()]
        excluded = {self.aliases[n].name if n in self.aliases else n for n in exclude}
        return [spec for spec in specs if spec.name not in excluded]

    def route(self, task_name: str, args: Any, kwargs: Any, options: Mapping[str, Any]) -> Route:
        """Resolve the destination of one publish (Celery's ``send_task_message`` rules)."""
        merged = dict(self._from_routes(task_name, args, kwargs, options))
        merged.update({k: v for k, v in options.items() if v is not None})
        queue = merged.get("queue")
        exchange = merged.get("exchange")
        routing_key = merged.get("routing_key")
        if exchange is not None and not isinstance(exchange, str):
            exchange = str(getattr(exchange, "name", ""))
        if queue is not None and not isinstance(queue, str):
            spec = queue_spec(queue)  # a Queue object is used as it is, as in Celery
        else:
            spec = self.queue_named(queue or self.default_queue)
        exchange_type = merged.get("exchange_type") or spec.exchange_type
        declare = None if spec.name in self.broadcast else spec
        if (not exchange or not routing_key) and exchange_type == "direct":
            # Celery publishes direct-routed tasks to the default exchange, keyed by queue name.
            return Route(exchange="", routing_key=spec.name, queue=declare)
        if exchange is None:
            exchange = spec.exchange or self.default_exchange
            routing_key = routing_key or spec.routing_key or self.default_routing_key
        return Route(exchange=str(exchange), routing_key=str(routing_key or ""), queue=declare)

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
