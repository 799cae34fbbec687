"""The frames of one ``basic.publish``, encoded without pamqp's per-value dispatch.

pamqp encodes a content header property by property and a header table value by value
through generic type lookups: for a Celery task message (a dozen headers) that is most of
the CPU a publish costs. :func:`publish_frames` writes the same bytes (checked against
pamqp in the tests) with direct branches for the common types (str, int, bool, None,
dict, list) and hands any other value (float, Decimal, datetime, bytearray, subclasses) to
pamqp's own encoder. Only the properties a celeriac envelope carries are encoded
(:func:`~celeriac.engines.amqp.connection.properties_for`); anything else takes pamqp.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pamqp import commands as cmd
from pamqp import encode
from pamqp import frame as amqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

__all__ = ["encode_properties", "publish_frames"]

_LONG = struct.Struct(">I")
_HEADER_START = struct.Struct(">BHI")  # frame type, channel, payload size
_CONTENT = struct.Struct(">HxxQ")  # class id (Basic), weight 0, body size
_METHOD_PUBLISH = struct.Struct(">HHH")  # class, method, ticket 0
_FRAME_END = b"\xce"
_EMPTY_TABLE = b"\x00\x00\x00\x00"
_FLAGS = {
    "content_type": 1 << 15,
    "content_encoding": 1 << 14,
    "headers": 1 << 13,
    "delivery_mode": 1 << 12,
    "priority": 1 << 11,
    "correlation_id": 1 << 10,
    "reply_to": 1 << 9,
}
_OTHERS = (
    "expiration",
    "message_id",
    "timestamp",
    "message_type",
    "user_id",
    "app_id",
    "cluster_id",
)


def _short(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 255:
        raise TypeError("string exceeds maximum length of 255 bytes")
    return bytes((len(data),)) + data


def _value(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        data: bytes = value.encode("utf-8")
        return b"S" + _LONG.pack(len(data)) + data
    if kind is int:
        if -128 <= value <= 127:
            return b"b" + struct.pack(">b", value)
        integer: bytes = encode.table_integer(value)
        return integer
    if kind is bool:
        return b"t\x01" if value else b"t\x00"
    if value is None:
        return b"V"
    if kind is dict:
        return b"F" + _table(value)
    if kind is list:
        data = b"".join([_value(item) for item in value])
        return b"A" + _LONG.pack(len(data)) + data
    other: bytes = encode.encode_table_value(value)
    return other


def _table(table: Mapping[str, Any]) -> bytes:
    if not table:
        return _EMPTY_TABLE
    parts = []
    for key, item in sorted(table.items()):
        if type(key) is not str or len(key) > 128:
            return encode.field_table(dict(table))  # (pamqp truncates long keys, warning)
        parts.append(_short(key))
        parts.append(_value(item))
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


def encode_properties(properties: cmd.Basic.Properties) -> bytes:
    """Property flags and values, as ``Basic.Properties.marshal`` writes them."""
    if any(getattr(properties, name) not in (None, "") for name in _OTHERS):
        return properties.marshal()
    flags = 0
    parts: list[bytes] = []
    value = properties.content_type
    if value:
        flags |= _FLAGS["content_type"]
        parts.append(_short(value))
    value = properties.content_encoding
    if value:
        flags |= _FLAGS["content_encoding"]
        parts.append(_short(value))
    headers = properties.headers
    if headers is not None:
        flags |= _FLAGS["headers"]
        parts.append(_table(headers))
    for name in ("delivery_mode", "priority"):
        octet = getattr(properties, name)
        if octet is not None:
            flags |= _FLAGS[name]
            parts.append(bytes((octet,)))
    for name in ("correlation_id", "reply_to"):
        text = getattr(properties, name)
        if text:
            flags |= _FLAGS[name]
            parts.append(_short(text))
    return struct.pack(">H", flags) + b"".join(parts)


def publish_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    properties: cmd.Basic.Properties,
    body: bytes,
    frame_max: int,
    mandatory: bool,
) -> bytes:
    """The method, header and body frames of one ``basic.publish`` on ``channel``."""
    method = (
        _METHOD_PUBLISH.pack(60, 40, 0)
        + _short(exchange)
        + _short(routing_key)
        + (b"\x01" if mandatory else b"\x00")
    )
    header = _CONTENT.pack(60, len(body)) + encode_properties(properties)
    parts = [
        _HEADER_START.pack(1, channel, len(method)),
        method,
        _FRAME_END,
        _HEADER_START.pack(2, channel, len(header)),
        header,
        _FRAME_END,
    ]
    step = frame_max - 8
    for start in range(0, len(body), step):
        chunk = body[start : start + step]
        parts += (_HEADER_START.pack(3, channel, len(chunk)), chunk, _FRAME_END)
    return b"".join(parts)


def pamqp_publish_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    properties: cmd.Basic.Properties,
    body: bytes,
    frame_max: int,
    mandatory: bool,
) -> bytes:
    """:func:`publish_frames` as pamqp writes them (the reference the tests compare with)."""
    publish = cmd.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory)
    parts = [
        amqp_frame.marshal(publish, channel),
        amqp_frame.marshal(ContentHeader(0, len(body), properties), channel),
    ]
    step = frame_max - 8
    for start in range(0, len(body), step):
        parts.append(amqp_frame.marshal(ContentBody(body[start : start + step]), channel))
    return b"".join(parts)
