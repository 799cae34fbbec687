"""Body compression codecs, by kombu's content names.

kombu's "gzip" is a zlib stream (RFC 1950), not a gzip file; we match it so
compressed messages read the same on both sides.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable

from celeriac.exceptions import MessageError

__all__ = ["compress", "content_name", "decompress"]

_ALIASES = {
    "gzip": "application/x-gzip",
    "zlib": "application/x-gzip",
    "bzip2": "application/x-bz2",
    "bz2": "application/x-bz2",
    "lzma": "application/x-lzma",
    "xz": "application/x-lzma",
}
_CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "application/x-gzip": (zlib.compress, zlib.decompress),
    "application/x-bz2": (bz2.compress, bz2.decompress),
    "application/x-lzma": (lzma.compress, lzma.decompress),
}


def content_name(name: str) -> str:
    """Map a user-facing name (``gzip``) to the header value (``application/x-gzip``)."""
    full = _ALIASES.get(name, name)
    if full not in _CODECS:
        raise ValueError(f"unknown compression {name!r} (known: {', '.join(sorted(_ALIASES))})")
    return full


def compress(name: str, data: bytes) -> tuple[str, bytes]:
    """Compress ``data``; return the header value and the compressed bytes."""
    full = content_name(name)
    return full, _CODECS[full][0](data)


def decompress(header: str, data: bytes) -> bytes:
    """Undo ``compress``; a MessageError names an unknown or corrupt encoding."""
    codec = _CODECS.get(_ALIASES.get(header, header))
    if codec is None:
        raise MessageError(f"unknown compression {header!r}")
    try:
        return codec[1](data)
    except (zlib.error, OSError, lzma.LZMAError, ValueError) as exc:
        raise MessageError(f"corrupt {header} body: {exc}") from exc
