"""Body compression codecs, by kombu's content names.

kombu's "gzip" is a zlib stream (RFC 1950), not a gzip file; we match it so
compressed messages read the same on both sides.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Protocol

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
_CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[], _Decompressor]]] = {
    "application/x-gzip": (zlib.compress, zlib.decompressobj),
    "application/x-bz2": (bz2.compress, bz2.BZ2Decompressor),
    "application/x-lzma": (lzma.compress, lzma.LZMADecompressor),
}


class _Decompressor(Protocol):
    """What zlib's, bz2's and lzma's incremental decompressors have in common."""

    @property
    def eof(self) -> bool:
        """Whether the end of the compressed stream was reached."""

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes:
        """Up to ``max_length`` bytes of output (-1 or 0: all of it)."""


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


def decompress(header: str, data: bytes, max_size: int = 0) -> bytes:
    """Undo ``compress``; a MessageError names an unknown or corrupt encoding.

    With ``max_size`` (bytes, 0 for no limit) no more than ``max_size + 1`` bytes are ever
    produced: a small message that would inflate beyond it (a "zip bomb") is refused
    before it can take the memory.
    """
    codec = _CODECS.get(_ALIASES.get(header, header))
    if codec is None:
        raise MessageError(f"unknown compression {header!r}")
    decompressor = codec[1]()
    try:
        if max_size:
            out = decompressor.decompress(data, max_size + 1)
        else:  # (zlib's object takes no -1 for "no limit", the others no 0)
            out = decompressor.decompress(data)
    except (zlib.error, OSError, lzma.LZMAError, ValueError, EOFError) as exc:
        raise MessageError(f"corrupt {header} body: {exc}") from exc
    if max_size and len(out) > max_size:
        raise MessageError(
            f"{header} body inflates to more than task_message_max_size ({max_size} bytes)"
        )
    if not decompressor.eof:
        raise MessageError(f"corrupt {header} body: the compressed stream is truncated")
    return out
