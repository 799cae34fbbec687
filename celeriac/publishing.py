"""From ``apply_async`` arguments to a task message and its route.

``build_message`` parses Celery's publishing options. What a task contributes when an
option is not given (its decorator options, else the ``task_*`` settings, and the route
``task_routes`` gives it) is the same for every call, so it is resolved once per task
and kept until a setting, the router or one of the task's own options changes
(:class:`TaskDefaults`). Only the per-call work is left: ids, times, arguments.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celeriac import clock
from celeriac.context import current_request
from celeriac.exceptions import QueueNotFound
from celeriac.protocol.ids import uuid4
from celeriac.protocol.message import TaskMessage, safe_repr
from celeriac.publish_checks import check_options, check_task_defaults
from celeriac.routing import Route, Router

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.task import Task

__all__ = [
    "PERSISTENT",
    "PUBLISH_OPTIONS",
    "PublishRequest",
    "TaskDefaults",
    "build_message",
    "delivery_mode",
    "task_defaults",
]

PUBLISH_OPTIONS = frozenset(
    {
        "task_id", "countdown", "eta", "expires", "queue", "exchange", "routing_key",
        "priority", "headers", "ignore_result", "serializer", "compression", "link",
        "link_error", "time_limit", "soft_time_limit", "shadow", "parent_id", "root_id",
        "group_id", "group_index", "chord", "chain", "reply_to", "retries", "retry",
        "retry_policy", "add_to_parent", "connection", "producer", "exchange_type",
        "delivery_mode", "mandatory", "immediate", "stamped_headers", "stamps",
        "replaced_task_nesting", "publisher", "declare", "argsrepr", "kwargsrepr",
    }
)  # fmt: skip

_ROUTE_OPTIONS = ("queue", "exchange", "routing_key")
# The task attributes a publish falls back to; a change to any of them re-resolves.
_TASK_ATTRIBUTES = (
    "expires", "time_limit", "soft_time_limit", "ignore_result", "priority", "serializer",
    "compression", *_ROUTE_OPTIONS,
)  # fmt: skip
_snapshot = operator.attrgetter(*_TASK_ATTRIBUTES)
_NO_TASK = (None,) * len(_TASK_ATTRIBUTES)

PERSISTENT = 2
"""AMQP's delivery mode of messages the broker writes to disk (1: transient)."""
_DELIVERY_MODES = {"persistent": 2, "transient": 1, 1: 1, 2: 2, "1": 1, "2": 2}


def delivery_mode(value: Any) -> int:
    """``persistent``/``transient`` (or 2/1), as ``task_default_delivery_mode`` takes it."""
    mode = _DELIVERY_MODES.get(value.lower() if isinstance(value, str) else value)
    if mode is None:
        raise ValueError(f"delivery_mode must be 'persistent' (2) or 'transient' (1): {value!r}")
    return mode


@dataclass(slots=True)
class PublishRequest:
    """Everything needed to publish one task message (``apply_async`` after option parsing)."""

    message: TaskMessage
    route: Route
    serializer: str
    compression: str | None = None
    delivery_mode: int = PERSISTENT
    retry: Any = None
    """``apply_async``'s ``retry`` (None: ``task_publish_retry``)."""
    retry_policy: Mapping[str, Any] | None = None
    """``apply_async``'s ``retry_policy``, over ``task_publish_retry_policy``."""
    like: PublishRequest | None = None
    """An earlier request of the same batch whose message differs from this one only in
    id, root id and arguments (``send_many``): its envelope is this one's template."""


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    """What a publish of one task uses for each option ``apply_async`` does not give.

    Each value is the task's own option when set, else the ``task_*`` setting, as
    Celery resolves them. ``route`` is the route of a publish without route options,
    or None when router functions (which see the arguments) decide it per call.
    """

    key: tuple[Any, ...]
    expires: Any
    time_limit: Any
    soft_time_limit: Any
    ignore_result: bool
    priority: Any
    serializer: str
    compression: str | None
    delivery_mode: int
    route_options: dict[str, Any]
    route: Route | None


def task_defaults(app: Celery, name: str, task: Task | None) -> TaskDefaults:
    """The defaults of task ``name`` on ``app``, resolved once and then cached on the app.

    The cache is keyed by the settings' version, the router, the task object and its
    option values, compared by identity (5 and 5.0 are equal but not written alike), so
    assigning any of them takes effect at once.
    """
    router = app.router
    values = _task_values(task)
    key = (app.conf.version, router, task, *values)
    cached = app._publish_defaults.get(name)
    if cached is not None and all(map(operator.is_, cached.key, key)):
        return cached
    conf = app.conf
    (expires, time_limit, soft_time_limit, ignore_result, priority, serializer, compression,
     *route_values) = values  # fmt: skip
    route_options = dict(zip(_ROUTE_OPTIONS, route_values, strict=True))
    time_limit = _or(time_limit, conf["task_time_limit"])
    soft_time_limit = _or(soft_time_limit, conf["task_soft_time_limit"])
    priority = _or(priority, conf["task_default_priority"])
    check_task_defaults(time_limit, soft_time_limit, priority)
    defaults = TaskDefaults(
        key=key,
        expires=expires,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        ignore_result=bool(_or(ignore_result, conf["task_ignore_result"])),
        priority=priority,
        serializer=_or(serializer, conf["task_serializer"]),
        compression=_or(compression, conf["task_compression"]),
        delivery_mode=delivery_mode(conf["task_default_delivery_mode"]),
        route_options=route_options,
        route=_default_route(router, name, route_options),
    )
    app._publish_defaults[name] = defaults
    return defaults


def _default_route(router: Router, name: str, route_options: dict[str, Any]) -> Route | None:
    """The route of a publish without route options, when the task name alone decides it."""
    if not router.by_name_only:
        return None
    try:
        return router.route(name, (), {}, route_options)
    except QueueNotFound:  # raised again by the publishes that do go there
        return None


def _task_values(task: Task | None) -> tuple[Any, ...]:
    """The task's own values of the options it may set (None where it has none)."""
    if task is None:
        return _NO_TASK
    try:
        values: tuple[Any, ...] = _snapshot(task)
    except AttributeError:  # not a Task subclass: read what it has
        values = tuple(getattr(task, name, None) for name in _TASK_ATTRIBUTES)
    return values


def _or(value: Any, default: Any) -> Any:
    """``value`` unless it is None (an unset option), as Celery's option lookup does."""
    return default if value is None else value


def _as_datetime(value: Any, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(clock.wall(), dt.UTC) + dt.timedelta(seconds=value)
    if isinstance(value, dt.timedelta):
        return dt.datetime.fromtimestamp(clock.wall(), dt.UTC) + value
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise TypeError(
        f"{name} must be a datetime, seconds or ISO-8601 string, not {type(value).__name__}"
    )


def _signature_dicts(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    return [dict(item) for item in items]


def build_message(
    app: Celery,
    name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    task: Task | None = None,
) -> PublishRequest:
    """Turn ``apply_async`` arguments into a TaskMessage and its route."""
    if options and not PUBLISH_OPTIONS.issuperset(options):
        unknown = set(options) - PUBLISH_OPTIONS
        raise TypeError(f"apply_async() got unknown option(s): {', '.join(sorted(unknown))}")
    if args is not None and not isinstance(args, list | tuple):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}")
    defaults = task_defaults(app, name, task)
    if not options:  # delay(): nothing to parse
        message = _default_message(name, args, kwargs, defaults)
        found = defaults.route or app.router.route(
            name, message.args, message.kwargs, dict(defaults.route_options)
        )
        return PublishRequest(
            message, found, defaults.serializer, defaults.compression, defaults.delivery_mode
        )
    check_options(options)
    message = _message(name, args, kwargs, options, defaults)
    route = defaults.route
    if route is None or any(options.get(key) is not None for key in _ROUTE_OPTIONS):
        route_options = {
            key: _or(options.get(key), defaults.route_options[key]) for key in _ROUTE_OPTIONS
        }
        route = app.router.route(name, message.args, message.kwargs, route_options)
    return PublishRequest(
        message=message,
        route=route,
        serializer=_or(options.get("serializer"), defaults.serializer),
        compression=_or(options.get("compression"), defaults.compression),
        delivery_mode=(
            defaults.delivery_mode
            if options.get("delivery_mode") is None
            else delivery_mode(options["delivery_mode"])
        ),
        retry=options.get("retry"),
        retry_policy=options.get("retry_policy"),
    )


def _message(
    name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    defaults: TaskDefaults,
) -> TaskMessage:
    """The TaskMessage of one publish: options first, then the task's defaults."""
    get = options.get
    eta = _as_datetime(get("eta"), "eta") or _as_datetime(get("countdown"), "countdown")
    parent = current_request()
    in_task = parent is not None and not parent.is_eager and parent.id is not None
    task_id = get("task_id") or uuid4()
    return TaskMessage(
        id=task_id,
        task=name,
        args=list(args or ()),
        kwargs=dict(kwargs or {}),
        eta=eta,
        expires=_as_datetime(_or(get("expires"), defaults.expires), "expires"),
        retries=int(get("retries") or 0),
        root_id=get("root_id") or (parent.root_id if in_task and parent else None) or task_id,
        parent_id=get("parent_id") or (parent.id if in_task and parent else None),
        group=get("group_id"),
        group_index=get("group_index"),
        time_limit=_or(get("time_limit"), defaults.time_limit),
        soft_time_limit=_or(get("soft_time_limit"), defaults.soft_time_limit),
        ignore_result=bool(_or(get("ignore_result"), defaults.ignore_result)),
        shadow=get("shadow"),
        callbacks=_signature_dicts(get("link")),
        errbacks=_signature_dicts(get("link_error")),
        chain=get("chain"),
        chord=get("chord"),
        headers=dict(get("headers") or {}),
        reply_to=get("reply_to"),
        priority=_or(get("priority"), defaults.priority),
        argsrepr=get("argsrepr") or _list_repr(args),
        kwargsrepr=get("kwargsrepr"),
        replaced_task_nesting=int(get("replaced_task_nesting") or 0),
        stamps=_stamps(get("stamps"), get("stamped_headers"), options),
    )


def _stamps(
    stamps: Mapping[str, Any] | None, names: Sequence[str] | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The message's stamps: the ``stamps`` option, and any ``stamped_headers`` named in
    the options themselves (Celery's form for ``apply_async``)."""
    found = dict(stamps or {})
    for name in names or ():
        if name not in found:
            found[name] = options.get(name)
    return found


def _default_message(
    name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, defaults: TaskDefaults
) -> TaskMessage:
    """The TaskMessage of a publish without options: what :func:`_message` gives for ``{}``."""
    parent = current_request()
    task_id = uuid4()
    root_id = parent_id = None
    if parent is not None and not parent.is_eager and parent.id is not None:
        root_id, parent_id = parent.root_id, parent.id
    expires = defaults.expires
    return TaskMessage(
        id=task_id,
        task=name,
        args=list(args or ()),
        kwargs=dict(kwargs or {}),
        expires=None if expires is None else _as_datetime(expires, "expires"),
        root_id=root_id or task_id,
        parent_id=parent_id,
        time_limit=defaults.time_limit,
        soft_time_limit=defaults.soft_time_limit,
        ignore_result=defaults.ignore_result,
        priority=defaults.priority,
        argsrepr=_list_repr(args),
    )


def _list_repr(args: Sequence[Any] | None) -> str | None:
    """Celery's argsrepr is the repr of the args as given: ``[1, 2]`` for a list. The
    message holds a list either way and encodes ``(1, 2)`` when no repr is set, so only
    a non-empty list needs its repr taken here."""
    return safe_repr(args) if type(args) is list and args else None
