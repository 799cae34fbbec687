"""redis-py's asyncio connection classes, packing commands with hiredis.

redis-py's blocking client packs commands with ``hiredis.pack_command`` when hiredis
is installed; its asyncio client always packs in Python, about two microseconds per
argument. A batch of results or acks is a script call with a few arguments per task,
so the worker and the client use these subclasses, which pack in C like the blocking
client does. Without hiredis they are redis-py's classes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celeriac.exceptions import MissingDependency

try:
    from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
    from redis.exceptions import DataError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis: pip install 'celeriac[redis]'") from exc

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is part of the redis extra
    _hiredis_pack = None  # type: ignore[assignment, unused-ignore]

__all__ = ["PackingConnection", "PackingSSLConnection", "PackingUnixConnection"]


class _HiredisPacking:
    """Mixin: ``pack_command`` through hiredis, with redis-py's handling of the command name."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """Pack one command into the Redis protocol (one buffer)."""
        if _hiredis_pack is None:
            packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
            return packed
        first = args[0]
        # A command name may carry literal arguments ("CONFIG GET"): Redis wants them apart.
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [_hiredis_pack(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


class PackingConnection(_HiredisPacking, Connection):
    """A TCP connection packing with hiredis."""


class PackingUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """A Unix-socket connection packing with hiredis."""


class PackingSSLConnection(_HiredisPacking, SSLConnection):
    """A TLS connection packing with hiredis."""
