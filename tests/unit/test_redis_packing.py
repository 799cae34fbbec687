"""The hiredis-packing connection classes produce exactly redis-py's own bytes."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from celeriac.engines.redis.connection import PackingConnection


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "key", b"value"),
        ("EVALSHA", "a" * 40, 2, "k1", b"k2", 1.5, -3, "caf\u00e9", b"\x00\xff" * 40_000),
        ("CONFIG GET", "maxmemory"),
        (b"CLIENT SETNAME", b"x"),
        ("PING",),
    ],
)
def test_hiredis_packing_matches_redis_py(args: tuple[object, ...]) -> None:
    ours = b"".join(PackingConnection().pack_command(*args))
    theirs = b"".join(bytes(chunk) for chunk in Connection().pack_command(*args))
    assert ours == theirs


def test_unpackable_argument_is_a_data_error() -> None:
    with pytest.raises(DataError):
        PackingConnection().pack_command("SET", "key", None)
