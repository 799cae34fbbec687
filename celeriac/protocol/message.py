"""Celery's task message, protocol version 2 (SPEC §2), and its encoding.

A task message is headers (who/what/when) plus a body ``[args, kwargs, embed]``
where ``embed`` carries the canvas: callbacks, errbacks, the rest of a chain and a
chord body. Protocol 1 bodies (a dict with ``task``/``id``/``args``) are read too.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from celeriac.exceptions import MessageError, SerializationError
from celeriac.protocol import compression, fields
from celeriac.protocol._fastjson import SCALARS
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.kombu import INVALID_CONTENT_TYPE, INVALID_HEADER
from celeriac.protocol.serializers import check_accept, get_serializer, serializer_for_content_type

__all__ = [
    "RESERVED_HEADERS",
    "TaskMessage",
    "decode_task",
    "encode_like",
    "encode_task",
    "format_time",
    "parse_time",
    "safe_repr",
]

RESERVED_HEADERS = frozenset(
    {
        "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
        "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
        "ignore_result", "replaced_task_nesting", "stamped_headers", "stamps", "compression",
        "redelivered",
    }
)  # fmt: skip

_REPR_LIMIT = 1024
_EMPTY_JSON_BODY = b'[[],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'
"""The JSON body of a call without arguments or canvas."""
_NO_CANVAS = (None, None, None, None)
_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


@dataclass(slots=True)
class TaskMessage:
    """One task invocation, as it travels between client and worker."""

    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False
    origin: str | None = None
    shadow: str | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    """Custom headers given to ``apply_async(headers=...)`` (top level on the wire)."""
    reply_to: str | None = None
    priority: int | None = None
    replaced_task_nesting: int = 0
    stamps: dict[str, Any] = field(default_factory=dict)
    argsrepr: str | None = None
    kwargsrepr: str | None = None


def format_time(value: dt.datetime | None) -> str | None:
    """ISO-8601 for a header; naive datetimes are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def parse_time(value: Any, name: str) -> dt.datetime | None:
    """Parse an ISO-8601 header value; naive values are UTC (Celery 5.3 wrote naive)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise MessageError(f"header {name!r} is not an ISO-8601 time: {value!r}") from exc
    else:
        raise MessageError(
            f"header {name!r} must be an ISO-8601 string, got {type(value).__name__}"
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def safe_repr(value: Any) -> str:
    """``repr`` truncated like Celery's argsrepr, never raising."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not stop a publish
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _headers_of(msg: TaskMessage) -> dict[str, Any]:
    headers: dict[str, Any] = {
        "lang": "py",
        "task": msg.task,
        "id": msg.id,
        "shadow": msg.shadow,
        "eta": format_time(msg.eta),
        "expires": format_time(msg.expires),
        "group": msg.group,
        "group_index": msg.group_index,
        "retries": msg.retries,
        "timelimit": [msg.time_limit, msg.soft_time_limit],
        "root_id": msg.root_id or msg.id,
        "parent_id": msg.parent_id,
        # A tuple's repr, as Celery's client shows the arguments of delay() and send_task().
        "argsrepr": msg.argsrepr if msg.argsrepr is not None else safe_repr(tuple(msg.args)),
        "kwargsrepr": msg.kwargsrepr if msg.kwargsrepr is not None else safe_repr(msg.kwargs),
        "origin": msg.origin or _ORIGIN,
        "ignore_result": msg.ignore_result,
        "replaced_task_nesting": msg.replaced_task_nesting,
        "stamped_headers": list(msg.stamps) if msg.stamps else None,
        "stamps": msg.stamps,
    }
    for key, value in msg.headers.items():
        if key not in RESERVED_HEADERS:
            headers[key] = value
    return headers


def encode_task(
    msg: TaskMessage, serializer: str = "json", compress_with: str | None = None
) -> Envelope:
    """Build the envelope Celery would publish for ``msg``.

    Raises SerializationError naming the argument that cannot be serialized.
    """
    codec = get_serializer(serializer)
    body = _body(msg, codec)
    headers = _headers_of(msg)
    if compress_with:
        headers["compression"], body = compression.compress(compress_with, body)
    properties: dict[str, Any] = {
        "correlation_id": msg.id,
        "reply_to": msg.reply_to or "",
        "delivery_mode": 2,
        "priority": msg.priority if msg.priority is not None else 0,
    }
    return Envelope(
        body=body,
        headers=headers,
        content_type=codec.content_type,
        content_encoding=getattr(codec, "content_encoding", None)
        or ("utf-8" if codec.name == "json" else "binary"),
        properties=properties,
        plain=_plain(msg, headers, properties),
    )


def encode_like(msg: TaskMessage, like: Envelope, serializer: str = "json") -> Envelope:
    """What :func:`encode_task` gives for ``msg`` when ``like`` is its envelope of a message
    that differs from ``msg`` only in ``id``, ``root_id``, the arguments and their reprs,
    and not compressed (``send_many``'s calls of one task): ``like``'s headers with those
    replaced, in their places. The caller vouches for the likeness."""
    headers = like.headers.copy()
    headers["id"] = msg.id
    headers["root_id"] = msg.root_id or msg.id
    headers["argsrepr"] = msg.argsrepr if msg.argsrepr is not None else safe_repr(tuple(msg.args))
    headers["kwargsrepr"] = msg.kwargsrepr if msg.kwargsrepr is not None else safe_repr(msg.kwargs)
    properties = like.properties.copy()
    properties["correlation_id"] = msg.id
    return Envelope(
        body=_body(msg, get_serializer(serializer)),
        headers=headers,
        content_type=like.content_type,
        content_encoding=like.content_encoding,
        properties=properties,
        plain=like.plain,  # (the replaced values are all exact str)
    )


def _body(msg: TaskMessage, codec: Any) -> bytes:
    """The serialized ``[args, kwargs, embed]``; SerializationError names the argument."""
    if codec.name == "json" and not (msg.args or msg.kwargs or _has_canvas(msg)):
        return _EMPTY_JSON_BODY  # what the serializer writes for it, every time
    embed = {
        "callbacks": msg.callbacks,
        "errbacks": msg.errbacks,
        "chain": msg.chain,
        "chord": msg.chord,
    }
    try:
        body: bytes = codec.dumps([msg.args, msg.kwargs, embed])
    except SerializationError as exc:
        raise SerializationError(_explain_unserializable(msg, codec.dumps, exc)) from exc
    return body


def _has_canvas(msg: TaskMessage) -> bool:
    return (msg.callbacks, msg.errbacks, msg.chain, msg.chord) != _NO_CANVAS


def _plain(msg: TaskMessage, headers: dict[str, Any], properties: dict[str, Any]) -> bool:
    """Whether the headers and properties are plain JSON (see ``Envelope.plain``), decided
    by type checks in C: without custom headers or stamps the only containers are
    ``timelimit`` (a list, whose two items are checked) and the empty ``stamps``."""
    if msg.headers or msg.stamps:
        return False
    kinds = set(map(type, headers.values()))
    kinds.discard(list)
    kinds.discard(dict)
    kinds.update(map(type, headers["timelimit"]))
    kinds.update(map(type, properties.values()))
    return kinds <= SCALARS


def _explain_unserializable(msg: TaskMessage, dumps: Any, exc: Exception) -> str:
    """Name the first argument of ``msg`` that the serializer rejects."""
    for index, value in enumerate(msg.args):
        try:
            dumps(value)
        except SerializationError as inner:
            return f"task {msg.task}: positional argument {index} ({safe_repr(value)}): {inner}"
    for key, value in msg.kwargs.items():
        try:
            dumps(value)
        except SerializationError as inner:
            return f"task {msg.task}: keyword argument {key!r} ({safe_repr(value)}): {inner}"
    return f"task {msg.task}: {exc}"


def decode_task(envelope: Envelope, accept: Collection[str], max_size: int = 0) -> TaskMessage:
    """Decode an envelope into a TaskMessage; MessageError explains any problem.

    Every way a message can be wrong (an undecodable body, a header of the wrong type, data
    nested too deeply to parse, a body beyond ``max_size`` bytes once decompressed, when
    ``max_size`` is not 0) is a MessageError naming the cause, so the worker dead-letters
    that message alone.
    """
    headers = envelope.headers
    if envelope.content_type == INVALID_CONTENT_TYPE:
        reason = headers.get(INVALID_HEADER) or "no reason given"
        raise MessageError(f"unreadable message: {reason}")
    check_accept(envelope.content_type, accept)
    raw = envelope.body
    if max_size and len(raw) > max_size:
        raise MessageError(
            f"message body is {len(raw)} bytes, more than task_message_max_size ({max_size})"
        )
    if headers.get("compression"):
        raw = compression.decompress(str(headers["compression"]), raw, max_size)
    try:
        body = serializer_for_content_type(envelope.content_type).loads(raw)
    except SerializationError as exc:
        raise MessageError(f"undecodable body ({envelope.content_type}): {exc}") from exc
    try:
        if "task" in headers:
            return _decode_v2(headers, body, envelope)
        if isinstance(body, dict) and "task" in body:
            return _decode_v1(body, envelope)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"invalid task message: {exc}") from exc
    except RecursionError as exc:
        raise MessageError("invalid task message: data nested too deeply") from exc
    raise MessageError("not a task message: no 'task' header (protocol 2) nor body field (1)")


def _decode_v2(headers: dict[str, Any], body: Any, envelope: Envelope) -> TaskMessage:
    if not (isinstance(body, list | tuple) and len(body) == 3):
        raise MessageError("protocol 2 body must be [args, kwargs, embed]")
    args, kwargs, embed = body
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise MessageError("protocol 2 body: args must be a list and kwargs an object")
    embed = fields.mapping(embed, "body embed") if isinstance(embed, dict) else {}
    get = headers.get
    task_id = get("id")
    if not isinstance(task_id, str) or not task_id:
        raise MessageError("task message has no 'id' header")
    name = get("task")
    if not isinstance(name, str) or not name:
        raise MessageError(f"header 'task' must be a task name, not {fields.describe(name)}")
    time_limit, soft_time_limit = fields.time_limits(get("timelimit"))
    eta, expires = get("eta"), get("expires")
    properties = envelope.properties
    return TaskMessage(
        id=task_id,
        task=name,
        args=args if type(args) is list else list(args),
        kwargs=fields.mapping(kwargs, "kwargs"),
        eta=None if eta is None else parse_time(eta, "eta"),
        expires=None if expires is None else parse_time(expires, "expires"),
        retries=fields.count(get("retries"), "header 'retries'"),
        root_id=fields.optional_text(get("root_id"), "header 'root_id'") or task_id,
        parent_id=fields.optional_text(get("parent_id"), "header 'parent_id'"),
        group=fields.optional_text(get("group"), "header 'group'"),
        group_index=fields.optional_int(get("group_index"), "header 'group_index'"),
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        ignore_result=bool(get("ignore_result", False)),
        origin=_text_or_none(get("origin")),
        shadow=fields.optional_text(get("shadow"), "header 'shadow'"),
        callbacks=fields.signatures(embed.get("callbacks"), "embed 'callbacks'"),
        errbacks=fields.signatures(embed.get("errbacks"), "embed 'errbacks'"),
        chain=fields.signatures(embed.get("chain"), "embed 'chain'"),
        chord=fields.optional_mapping(embed.get("chord"), "embed 'chord'"),
        headers=_extra_headers(headers),
        reply_to=_text_or_none(properties.get("reply_to")) or None,
        priority=fields.priority(properties.get("priority"), "property 'priority'"),
        replaced_task_nesting=fields.count(
            get("replaced_task_nesting"), "header 'replaced_task_nesting'"
        ),
        stamps=fields.mapping(get("stamps"), "header 'stamps'"),
        argsrepr=_text_or_none(get("argsrepr")),
        kwargsrepr=_text_or_none(get("kwargsrepr")),
    )


def _text_or_none(value: Any) -> str | None:
    """An informational header (origin, reprs): kept if it is text, else dropped."""
    return value if isinstance(value, str) else None


def _extra_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The custom headers (those Celery does not reserve), in their order."""
    if headers.keys() <= RESERVED_HEADERS:  # the usual case, decided in C
        return {}
    return {k: v for k, v in headers.items() if k not in RESERVED_HEADERS}


def _decode_v1(body: dict[str, Any], envelope: Envelope) -> TaskMessage:
    task_id = body.get("id")
    if not isinstance(task_id, str):
        raise MessageError("protocol 1 message has no 'id'")
    time_limit, soft_time_limit = fields.time_limits(body.get("timelimit"))
    args = body.get("args")
    if args is not None and not isinstance(args, list | tuple):
        raise TypeError(f"field 'args' must be a list, not {fields.describe(args)}")
    return TaskMessage(
        id=task_id,
        task=str(body["task"]),
        args=list(args or []),
        kwargs=fields.mapping(body.get("kwargs"), "field 'kwargs'"),
        eta=parse_time(body.get("eta"), "eta"),
        expires=parse_time(body.get("expires"), "expires"),
        retries=fields.count(body.get("retries"), "field 'retries'"),
        root_id=task_id,
        group=fields.optional_text(body.get("taskset"), "field 'taskset'"),
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        callbacks=fields.signatures(body.get("callbacks"), "field 'callbacks'"),
        errbacks=fields.signatures(body.get("errbacks"), "field 'errbacks'"),
        chord=fields.optional_mapping(body.get("chord"), "field 'chord'"),
        reply_to=_text_or_none(envelope.properties.get("reply_to")) or None,
        priority=fields.priority(envelope.properties.get("priority"), "property 'priority'"),
    )
