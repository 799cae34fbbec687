"""How result stores encode what they keep: ``result_serializer``, ``result_compression`` and
``result_accept_content``, in Celery's format.

A compressed payload describes itself as Celery 5.7 writes it: a marker, the compression's
content type, a NUL byte, then the compressed bytes. Any reader decompresses what carries
the marker, whatever its own setting, so results stay readable when compression is turned
on or off (and Celery peers read ours). Decoding refuses a serializer that is not in the
accepted content types, as Celery does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from celeriac.exceptions import ContentDisallowed
from celeriac.protocol import compression
from celeriac.protocol.serializers import Serializer, check_accept, get_serializer

__all__ = ["COMPRESSED_MARKER", "ResultCodec", "result_codec"]

COMPRESSED_MARKER = b"\x00celery-compressed\x00"


class ResultCodec:
    """A :class:`~celeriac.protocol.serializers.Serializer` for result stores."""

    def __init__(
        self,
        serializer: Serializer,
        *,
        compress_with: str | None = None,
        accept: Collection[str] | None = None,
    ) -> None:
        self.serializer = serializer
        self.name = serializer.name
        self.content_type = serializer.content_type
        self.compress_with = compression.content_name(compress_with) if compress_with else None
        self.accept = frozenset(accept) if accept is not None else None
        """The accepted content types (names or MIME types); None: not restricted."""
        self._refusal: ContentDisallowed | None = None
        if accept is not None:
            try:
                check_accept(serializer.content_type, accept)
            except ContentDisallowed as exc:
                self._refusal = ContentDisallowed(
                    f"cannot read results encoded with result_serializer={serializer.name!r}:"
                    f" it is not in result_accept_content (or accept_content) {sorted(accept)}"
                )
                self._refusal.__cause__ = exc

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``, compressed when ``result_compression`` asks for it."""
        data = self.serializer.dumps(obj)
        if self.compress_with is None:
            return data
        header, body = compression.compress(self.compress_with, data)
        return b"".join((COMPRESSED_MARKER, header.encode(), b"\x00", body))

    def loads(self, data: bytes) -> Any:
        """Decode what :meth:`dumps` (or a Celery peer) wrote."""
        if self._refusal is not None:
            raise self._refusal
        raw = bytes(data) if isinstance(data, memoryview) else data
        if raw.startswith(COMPRESSED_MARKER):
            header, _, body = raw[len(COMPRESSED_MARKER) :].partition(b"\x00")
            raw = compression.decompress(header.decode(), body)
        return self.serializer.loads(raw)


def result_codec(conf: Mapping[str, Any], *, compressed: bool = True) -> ResultCodec:
    """The codec the settings ask for; ``compressed=False`` for stores that keep results
    uncompressed (as Celery's database backend does)."""
    accept = conf.get("result_accept_content")
    if accept is None:
        accept = conf.get("accept_content")
    return ResultCodec(
        get_serializer(conf.get("result_serializer") or "json"),
        compress_with=conf.get("result_compression") if compressed else None,
        accept=None if accept is None else list(accept),
    )
