"""kombu's JSON envelope, as the Redis (and SQLite) transports store messages (SPEC §3.2).

Every list element a Celery producer ``LPUSH``es is a JSON object::

    {"body": "<base64>", "content-encoding": "utf-8", "content-type": "application/json",
     "headers": {...}, "properties": {..., "delivery_info": {"exchange", "routing_key"},
     "priority": 0, "body_encoding": "base64", "delivery_tag": "<uuid4>"}}

:func:`encode` builds that object from an :class:`Envelope`; :func:`decode` turns stored
bytes back into an :class:`Envelope` plus the kombu bookkeeping (delivery tag, where it was
published, whether it was redelivered). The kombu-only properties (``delivery_info``,
``body_encoding``, ``delivery_tag``) are kept out of ``Envelope.properties`` so a worker
that republishes an envelope gets fresh ones; so are ``priority`` when it is 0 (kombu always
writes it, and 0 is what an absent priority means) and the ``redelivered`` header kombu adds
on restore (it is reported as ``KombuMessage.redelivered``). Thus ``decode(encode(e))``
gives back ``e``.

Bad input never raises: bytes that are not a JSON object, an object without a string
``body``, or a body that is not valid base64 decode to an *invalid* envelope whose body is
the stored bytes unchanged, whose content type is :data:`INVALID_CONTENT_TYPE` (never in
anyone's ``accept_content``, so a worker refuses it and dead-letters it) and whose header
:data:`INVALID_HEADER` says what was wrong. Nothing is lost and nothing loops.

Exchanges (SPEC §3.3) are emulated from binding sets ``_kombu.binding.<exchange>`` whose
members are ``routing_key SEP pattern SEP queue``; :func:`binding_member` and
:func:`parse_binding` write and read them.

Priorities (SPEC §3.4): a message with priority ``p`` lives in the list of the largest
step of ``0, 3, 6, 9`` that is ``<= p``; bucket 0 is the plain queue name, the others are
``<queue>\\x06\\x16<step>``. :func:`bucket_key` computes that name.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from celeriac.exceptions import SerializationError
from celeriac.protocol import _fastjson
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import JSON

__all__ = [
    "INVALID_CONTENT_TYPE",
    "INVALID_HEADER",
    "KOMBU_PROPERTIES",
    "PRIORITY_STEPS",
    "SEP",
    "Binding",
    "KombuMessage",
    "binding_member",
    "bucket_key",
    "bucket_of",
    "decode",
    "encode",
    "encode_dict",
    "invalid_envelope",
    "mark_redelivered",
    "parse_binding",
    "topic_pattern",
]

SEP = "\x06\x16"
"""kombu's separator in priority list names and binding-set members."""

PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's default Redis priority buckets."""

INVALID_CONTENT_TYPE = "application/x-celeriac-invalid"
"""Content type of an envelope made from stored bytes that are not a kombu envelope."""

INVALID_HEADER = "x-celeriac-invalid"
"""Header of an invalid envelope: why the stored bytes could not be decoded."""

KOMBU_PROPERTIES = frozenset({"delivery_info", "body_encoding", "delivery_tag"})
"""Envelope properties that only exist in kombu's framing, not in AMQP's."""

_TASK_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode", "priority")


@dataclass(frozen=True, slots=True)
class KombuMessage:
    """A decoded envelope plus kombu's per-message bookkeeping."""

    envelope: Envelope
    delivery_tag: str | None = None
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False
    valid: bool = True


@dataclass(frozen=True, slots=True)
class Binding:
    """One member of a binding set: messages with a matching routing key go to ``queue``."""

    routing_key: str
    pattern: str
    queue: str


def binding_member(routing_key: str, queue: str, *, topic: bool = False) -> str:
    """The binding-set member kombu writes (topic bindings also carry kombu's regex)."""
    pattern = topic_pattern(routing_key) if topic else ""
    return SEP.join((routing_key, pattern, queue))


def parse_binding(member: bytes | str) -> Binding | None:
    """Read a binding-set member; None if it is not three SEP-separated fields."""
    text = member.decode("utf-8", errors="replace") if isinstance(member, bytes) else member
    parts = text.split(SEP)
    if len(parts) != 3:
        return None
    return Binding(routing_key=parts[0], pattern=parts[1], queue=parts[2])


def topic_pattern(routing_key: str) -> str:
    """kombu's regex text for a topic binding key (stored only so kombu can read it)."""
    words = {"*": r"[^\.]+", "#": r".*?"}
    escaped = (words.get(word, re.escape(word)) for word in routing_key.split("."))
    return "^" + r"\.".join(escaped) + "$"


def bucket_of(priority: Any) -> int:
    """The priority step (0, 3, 6 or 9) a message with ``priority`` is stored under."""
    if not isinstance(priority, int) or isinstance(priority, bool):
        return 0
    step = 0
    for candidate in PRIORITY_STEPS:
        if priority >= candidate:
            step = candidate
    return step


def bucket_key(queue: str, priority: Any = 0) -> str:
    """The Redis list holding ``queue``'s messages of ``priority`` (without key prefix)."""
    step = bucket_of(priority)
    return queue if step == 0 else f"{queue}{SEP}{step}"


def encode_dict(
    envelope: Envelope, *, exchange: str, routing_key: str, delivery_tag: str
) -> dict[str, Any]:
    """kombu's envelope object for ``envelope`` published to ``exchange``/``routing_key``."""
    given = envelope.properties
    if tuple(given) == _TASK_PROPERTIES:  # a task message's, in the encoder's order
        properties: dict[str, Any] = {
            "correlation_id": given["correlation_id"],
            "reply_to": given["reply_to"],
            "delivery_mode": given["delivery_mode"],
        }
    else:
        properties = {key: value for key, value in given.items() if key not in KOMBU_PROPERTIES}
        properties.pop("priority", None)
    properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
    properties["priority"] = envelope.priority
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = delivery_tag
    return {
        "body": base64.b64encode(envelope.body).decode("ascii"),
        "content-encoding": envelope.content_encoding,
        "content-type": envelope.content_type,
        "headers": envelope.headers,
        "properties": properties,
    }


def encode(envelope: Envelope, *, exchange: str, routing_key: str, delivery_tag: str) -> bytes:
    """The stored bytes of ``envelope`` (UTF-8 JSON); raise SerializationError if impossible.

    A ``plain`` envelope is written by orjson without looking at its values again: only
    the names given here and the base64 body are added, all of them exact ``str``."""
    obj = encode_dict(
        envelope, exchange=exchange, routing_key=routing_key, delivery_tag=delivery_tag
    )
    if envelope.plain and {type(exchange), type(routing_key), type(delivery_tag)} == {str}:
        data = _fastjson.dumps_plain(obj)
        if data is not None:
            return data
    return JSON.dumps(obj)


def invalid_envelope(raw: bytes, reason: str) -> Envelope:
    """An envelope that carries undecodable bytes to the worker, which dead-letters it.

    Any transport that cannot make an envelope of what it stored uses it, so that the
    message is set aside alone, with ``reason`` in the worker's log line.
    """
    return Envelope(
        body=raw,
        headers={INVALID_HEADER: reason},
        content_type=INVALID_CONTENT_TYPE,
        content_encoding="binary",
    )


def _invalid(raw: bytes, reason: str) -> KombuMessage:
    return KombuMessage(envelope=invalid_envelope(raw, reason), valid=False)


def _decode_body(body: Any, encoding: Any) -> bytes:
    """The raw body bytes; raise ValueError when the body is missing or not decodable."""
    if not isinstance(body, str):
        raise ValueError("envelope has no string 'body'")
    if encoding == "base64":
        try:
            return binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"body is not valid base64: {exc}") from exc
    if encoding in (None, "", "utf-8"):
        return body.encode("utf-8", errors="surrogateescape")
    raise ValueError(f"unknown body_encoding {encoding!r}")


def decode(raw: bytes | str) -> KombuMessage:
    """Decode stored bytes; never raises (see the module docstring for bad input)."""
    data = raw.encode("utf-8", errors="surrogateescape") if isinstance(raw, str) else bytes(raw)
    try:
        payload = _fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return _invalid(data, f"not JSON: {exc}")
    except RecursionError:
        return _invalid(data, "envelope JSON nested too deeply to decode")
    if type(payload) is not dict:
        return _invalid(data, f"envelope is a JSON {type(payload).__name__}, not an object")
    # The parsed objects are ours alone: take them apart in place instead of copying.
    properties = payload.get("properties")
    if type(properties) is not dict:
        properties = {}
    try:
        body = _decode_body(payload.get("body"), properties.pop("body_encoding", None))
    except ValueError as exc:
        return _invalid(data, str(exc))
    headers = payload.get("headers")
    if type(headers) is not dict:
        headers = {}
    info = properties.pop("delivery_info", None)
    if type(info) is not dict:
        info = {}
    tag = properties.pop("delivery_tag", None)
    # kombu's restore marks the headers too; it is framing, reported as ``redelivered``.
    redelivered = bool(info.get("redelivered")) | bool(headers.pop("redelivered", False))
    if properties.get("priority") == 0:
        del properties["priority"]  # kombu always writes it; 0 is also what "unset" means
    envelope = Envelope(
        body=body,
        headers=headers,
        content_type=str(payload.get("content-type") or "application/json"),
        content_encoding=str(payload.get("content-encoding") or "utf-8"),
        properties=properties,
    )
    return KombuMessage(
        envelope=envelope,
        delivery_tag=tag if isinstance(tag, str) else None,
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        redelivered=redelivered,
    )


def mark_redelivered(raw: bytes) -> tuple[bytes, int]:
    """Set kombu's redelivered flags on stored bytes; return them and the message priority.

    Bytes that are not a kombu envelope come back unchanged (priority 0): a restore must
    put back exactly what it took.
    """
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return raw, 0
    if not isinstance(payload, dict):
        return raw, 0
    headers = payload.get("headers")
    if isinstance(headers, dict):
        headers["redelivered"] = True
    properties = payload.get("properties")
    priority: Any = 0
    if isinstance(properties, dict):
        info = properties.get("delivery_info")
        if isinstance(info, dict):
            info["redelivered"] = True
        priority = properties.get("priority", 0)
    try:
        encoded = json.dumps(payload, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    except (TypeError, ValueError) as exc:  # pragma: no cover - json round trip of json input
        raise SerializationError(f"cannot re-encode a restored envelope: {exc}") from exc
    return encoded, bucket_of(priority)
