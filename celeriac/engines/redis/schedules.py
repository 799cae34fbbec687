"""The Redis schedule store: beat state next to the Redis broker's keys.

Keys (every one starts with the ``global_keyprefix`` option, as the transport's do):

* ``celeriac:beat:<namespace>:lease`` - a string, the holder id, with a ``PX`` expiry
  kept by Redis' own clock. One Lua script takes it when absent (``SET ... PX``) or
  extends it when the caller already holds it (``PEXPIRE``); another deletes it only
  for its holder.
* ``celeriac:beat:<namespace>:last_run`` - a hash, entry name -> ``"<last run>
  <claimer>"``: the epoch seconds as Python's exact ``repr`` of the float, and the
  holder that claimed it. The claim script checks the lease value and
  compares-and-sets the field in one atomic step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.engines.redis.connection import connect_redis, parse_redis_url, release
from celeriac.exceptions import MissingDependency

try:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis beat store: pip install 'celeriac[redis]'") from exc

__all__ = ["RedisStore"]

ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if not current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
if current == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# A hash value is "<last run> <claimer>". The compare-and-set looks at the last run;
# a revert also at the claimer, so it never undoes another beat's claim of the same tick.
# KEYS: lease, last_run hash. ARGV: holder, entry, expect_absent ('1'/'0'), expected, new.
CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local current = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[3] == '1' then
    if current then return 0 end
else
    if not current then return 0 end
    local space = string.find(current, ' ', 1, true)
    if string.sub(current, 1, (space or 0) - 1) ~= ARGV[4] then return 0 end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[5] .. ' ' .. ARGV[1])
return 1
"""

# KEYS: last_run hash. ARGV: entry, "<claimed> <holder>", has_previous ('1'/'0'), previous.
REVERT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
    return 0
end
if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[4] .. ' ')
else
    redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""


def _text(value: float) -> str:
    # repr round-trips a float exactly, so the stored text compares equal in Lua.
    return repr(float(value))


class RedisStore:
    """A :class:`~celeriac.beat.stores.ScheduleStore` in Redis (see the module docstring).

    Options as for the Redis transport (connection settings, ``global_keyprefix``).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._settings = parse_redis_url(url, dict(options or {}), store="schedules")
        base = f"{self._settings.key_prefix}celeriac:beat:{namespace}"
        self.lease_key = f"{base}:lease"
        self.state_key = f"{base}:last_run"
        self._client: Redis[bytes] | None = None
        self._scripts: dict[str, AsyncScript] = {}

    def __repr__(self) -> str:
        return f"<RedisStore {self.lease_key}>"

    async def connect(self) -> None:
        """Create the client and register the scripts (connects lazily); idempotent."""
        if self._client is not None:
            return
        client = connect_redis(self._settings)
        sources = {"acquire": ACQUIRE, "release": RELEASE, "claim": CLAIM, "revert": REVERT}
        self._scripts = {name: client.register_script(src) for name, src in sources.items()}
        self._client = client

    async def close(self) -> None:
        """Close the client and its pool."""
        client, self._client = self._client, None
        if client is not None:
            await release(client)

    async def _ready(self) -> Redis[bytes]:
        if self._client is None:
            await self.connect()
        assert self._client is not None
        return self._client

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> int:
        client = await self._ready()
        return int(await self._scripts[script](keys=keys, args=args, client=client))

    async def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take a free or expired lease, or extend ``holder``'s own one."""
        millis = max(1, int(ttl * 1000))
        return await self._run("acquire", [self.lease_key], [holder, millis]) == 1

    async def release_lease(self, holder: str) -> None:
        """Delete the lease if ``holder`` has it."""
        await self._run("release", [self.lease_key], [holder])

    async def lease_holder(self) -> str | None:
        """The holder of the unexpired lease, or None."""
        client = await self._ready()
        value = await client.get(self.lease_key)
        return None if value is None else value.decode()

    async def load(self) -> dict[str, float]:
        """Every entry's last run."""
        client = await self._ready()
        raw = await client.hgetall(self.state_key)
        return {key.decode(): float(value.split(b" ", 1)[0]) for key, value in raw.items()}

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        """Lease check and compare-and-set of the last run, in one script."""
        absent = "1" if expected is None else "0"
        old = "" if expected is None else _text(expected)
        args = [holder, entry, absent, old, _text(new)]
        return await self._run("claim", [self.lease_key, self.state_key], args) == 1

    async def revert(self, holder: str, entry: str, claimed: float, previous: float | None) -> bool:
        """Put ``previous`` back if the last run is still ``claimed`` by ``holder``."""
        has = "0" if previous is None else "1"
        old = "" if previous is None else _text(previous)
        args = [entry, f"{_text(claimed)} {holder}", has, old]
        return await self._run("revert", [self.state_key], args) == 1
