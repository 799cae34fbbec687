"""Serializers: turn message bodies and result documents into bytes and back.

JSON is the default and the only content type accepted unless configured; it
encodes the same tagged objects as kombu for values JSON lacks (datetime, date,
time, UUID, Decimal, bytes), so Celery peers read them back as native values.
msgpack is optional (``celeriac[msgpack]``); pickle must be opted in through
``accept_content`` because unpickling runs arbitrary code.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import pickle
import uuid
from collections.abc import Callable, Collection
from typing import Any, Protocol

from celeriac.exceptions import ContentDisallowed, MissingDependency, SerializationError
from celeriac.protocol import _fastjson

__all__ = [
    "JSON",
    "Serializer",
    "check_accept",
    "content_type_of",
    "get_serializer",
    "is_registered",
    "register_serializer",
    "serializer_for_content_type",
]


class Serializer(Protocol):
    """Encodes Python values to bytes of one content type."""

    name: str
    content_type: str

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``; raise SerializationError naming what could not be encoded."""

    def loads(self, data: bytes) -> Any:
        """Decode bytes produced by ``dumps`` (or by a Celery peer)."""


def _tag_value(obj: Any) -> Any:
    """Encode one non-JSON value as kombu's ``{"__type__", "__value__"}`` object."""
    if isinstance(obj, dt.datetime):
        return {"__type__": "datetime", "__value__": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {"__type__": "date", "__value__": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {"__type__": "time", "__value__": obj.isoformat()}
    if isinstance(obj, uuid.UUID):
        return {"__type__": "uuid", "__value__": {"hex": obj.hex}}
    if isinstance(obj, decimal.Decimal):
        return {"__type__": "decimal", "__value__": str(obj)}
    if isinstance(obj, bytes):
        return {"__type__": "bytes", "__value__": obj.decode("utf-8", errors="surrogateescape")}
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_UNTAGGERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": lambda value: uuid.UUID(hex=value["hex"]),
    "decimal": decimal.Decimal,
    "bytes": lambda value: value.encode("utf-8", errors="surrogateescape"),
}


def _untag_object(obj: dict[str, Any]) -> Any:
    """Turn a tagged object back into its value; leave unknown tags untouched."""
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        untag = _UNTAGGERS.get(obj["__type__"])
        if untag is not None:
            try:
                return untag(obj["__value__"])
            except (TypeError, ValueError, KeyError, decimal.InvalidOperation):
                return obj
    return obj


def _untagged(data: bytes) -> bool:
    """True if ``data`` cannot hold a kombu tag (``"__type__"``, even spelt with escapes)."""
    return b"__type__" not in data and b"\\u" not in data


class JSONSerializer:
    """JSON with kombu's tagged types; compact separators to keep messages small."""

    name = "json"
    content_type = "application/json"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            default=_tag_value, ensure_ascii=False, separators=(",", ":"), check_circular=False
        )
        self._decoder = json.JSONDecoder(object_hook=_untag_object)

    def dumps(self, obj: Any) -> bytes:
        """Encode to UTF-8 JSON."""
        fast = _fastjson.dumps(obj)
        if fast is not None:
            return fast  # the same bytes, from orjson
        try:
            return self._encoder.encode(obj).encode("utf-8", errors="surrogatepass")
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"cannot encode as JSON: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Decode UTF-8 JSON."""
        if _fastjson.HAVE_ORJSON and isinstance(data, bytes) and _untagged(data):
            try:
                return _fastjson.loads(data)  # no tagged values: no object hook needed
            except (UnicodeDecodeError, ValueError, RecursionError):
                pass  # the standard path below reports it
        try:
            text = (
                data.decode("utf-8") if isinstance(data, bytes | bytearray | memoryview) else data
            )
            return self._decoder.decode(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerializationError(f"invalid JSON: {exc}") from exc
        except RecursionError as exc:
            raise SerializationError("JSON nested too deeply to decode") from exc


class PickleSerializer:
    """Python pickle; only ever used when the user puts it in ``accept_content``."""

    name = "pickle"
    content_type = "application/x-python-serialize"

    def dumps(self, obj: Any) -> bytes:
        """Pickle with the highest protocol."""
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(f"cannot pickle: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle."""
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(f"invalid pickle data: {exc}") from exc


class MsgpackSerializer:
    """msgpack; needs the ``msgpack`` package (``celeriac[msgpack]``)."""

    name = "msgpack"
    content_type = "application/x-msgpack"

    def __init__(self) -> None:
        try:
            import msgpack  # noqa: PLC0415 - optional dependency, imported on first use
        except ImportError as exc:
            raise MissingDependency("msgpack serializer: pip install 'celeriac[msgpack]'") from exc
        self._msgpack = msgpack

    def dumps(self, obj: Any) -> bytes:
        """Pack with binary strings kept distinct from text."""
        try:
            packed: bytes = self._msgpack.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot encode as msgpack: {exc}") from exc
        return packed

    def loads(self, data: bytes) -> Any:
        """Unpack."""
        try:
            return self._msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise SerializationError(f"invalid msgpack data: {exc}") from exc


JSON = JSONSerializer()

_FACTORIES: dict[str, Callable[[], Serializer]] = {
    "json": lambda: JSON,
    "pickle": PickleSerializer,
    "msgpack": MsgpackSerializer,
}
_CONTENT_TYPES = {
    "application/json": "json",
    "application/x-python-serialize": "pickle",
    "application/x-msgpack": "msgpack",
}
_cache: dict[str, Serializer] = {}


def get_serializer(name: str) -> Serializer:
    """Return the serializer called ``name`` (or registered for that content type)."""
    key = _CONTENT_TYPES.get(name, name)
    if key not in _cache:
        factory = _FACTORIES.get(key)
        if factory is None and key in ("auth", "application/data"):
            raise SerializationError(
                "the 'auth' serializer (message signing) is set up by app.setup_security()"
            )
        if factory is None:
            known = ", ".join(sorted(_FACTORIES))
            raise SerializationError(f"unknown serializer {name!r} (known: {known})")
        _cache[key] = factory()
    return _cache[key]


def is_registered(name: str) -> bool:
    """Whether a serializer of that name (or content type) is known in this process."""
    return _CONTENT_TYPES.get(name, name) in _FACTORIES


def register_serializer(serializer: Serializer) -> None:
    """Make ``serializer`` known by its name and content type (e.g. the signing ``auth``)."""
    _FACTORIES[serializer.name] = lambda: serializer
    _CONTENT_TYPES[serializer.content_type] = serializer.name
    _cache[serializer.name] = serializer


def serializer_for_content_type(content_type: str) -> Serializer:
    """Return the serializer that reads ``content_type``; MessageError-style error if none."""
    key = _CONTENT_TYPES.get(content_type)
    if key is None:
        raise ContentDisallowed(f"unknown content type {content_type!r}")
    return get_serializer(key)


def content_type_of(name: str) -> str:
    """Content type for a serializer name (``json`` -> ``application/json``)."""
    return get_serializer(name).content_type


def check_accept(content_type: str, accept: Collection[str]) -> None:
    """Raise ContentDisallowed unless ``content_type`` is accepted.

    ``accept`` may hold serializer names (``json``) or content types, as Celery allows.
    """
    name = _CONTENT_TYPES.get(content_type)
    if content_type in accept or (name is not None and name in accept):
        return
    raise ContentDisallowed(
        f"refusing to decode content type {content_type!r}: not in accept_content {sorted(accept)}"
    )
