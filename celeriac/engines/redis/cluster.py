"""Redis Cluster: the key layout, the seed list and the client every Redis role uses on it.

URL form: ``redis+cluster://[user:password@]host:port[,host:port...]/`` (``rediss+cluster://``
for TLS); the hosts are seeds, the rest of the cluster is discovered from them.

Key layout. A Lua script or a MULTI may only touch keys of one hash slot, and the
transport's scripts touch several keys at once (a queue list, the ``unacked`` hash, the
consumer's lease hash, the delayed index...; :mod:`celeriac.engines.redis.scripts`).
On a Cluster every key of one store therefore starts with one hash tag,
``{<cluster_hash_tag>}``, before the ``global_keyprefix`` and the usual name, so that the
names after the tag are exactly the plain-Redis ones. One store's keys live on one
primary (and its replicas); the broker, the result store and the beat store default to
different tags (:data:`DEFAULT_TAGS`) and so spread over the primaries. On plain Redis
nothing changes: the names stay kombu's and Celery's.

Pub/sub (result notifications, events, broadcast control): classic ``PUBLISH`` reaches
subscribers on every node of a Cluster, so subscriptions use redis-py's ``ClusterPubSub``
(connected to the node that serves the tag's slot) and publishes are sent after the
pipeline they were queued on (redis-py refuses ``PUBLISH`` inside a cluster pipeline).
Scripts inside a pipeline are sent by source, and commands wait for a free connection
(:class:`ClusterPipe`, :class:`ClusterClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from celeriac.exceptions import ImproperlyConfigured, MissingDependency

try:
    from redis import exceptions as redis_errors
    from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis support: pip install 'celeriac[redis]'") from exc

__all__ = [
    "CLUSTER_SCHEMES",
    "DEFAULT_TAGS",
    "HEADROOM",
    "ClusterClient",
    "ClusterPipe",
    "cluster_client",
    "cluster_prefix",
    "parse_seeds",
    "reachable_seeds",
]

logger = logging.getLogger(__name__)

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
"""URL schemes naming a Redis Cluster (the second one with TLS)."""
DEFAULT_TAGS = {"broker": "celeriac", "results": "celeriac_results", "schedules": "celeriac-beat"}
"""The hash tag of each store when the ``cluster_hash_tag`` option names none. Their slots
(12089, 5073, 6452) fall in three different thirds of the slot range, so on a cluster of
three primaries with the even split ``redis-cli --cluster create`` makes, the three stores
sit on three primaries."""

if TYPE_CHECKING:  # generic in types-redis only
    _PipelineBase = ClusterPipeline[bytes]
    _ClientBase = RedisCluster[bytes]
else:
    _PipelineBase, _ClientBase = ClusterPipeline, RedisCluster

HEADROOM = 8
"""Connections per node beyond ``max_connections``: one per subscription (result waits,
events, control) and the slot-table refreshes."""

_probed: dict[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] = {}


def parse_seeds(netloc: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (no credentials) as pairs; ImproperlyConfigured if malformed."""
    seeds: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in netloc.split(","))):
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = part, "6379"
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"invalid Redis Cluster seed {part!r} (expected host:port)")
        seeds.append((host, int(port)))
    if not seeds:
        raise ImproperlyConfigured("a redis+cluster:// URL needs at least one host:port seed")
    return tuple(seeds)


def cluster_prefix(tag: Any, global_prefix: str) -> str:
    """The key prefix of a store on a Cluster: ``{tag}`` then ``global_keyprefix``.

    Refuses a layout whose keys would not share one slot: an empty tag or one with braces
    (``cluster_hash_tag``), or a ``global_keyprefix`` carrying a hash tag of its own (it
    would be ignored: only the first ``{...}`` of a key picks its slot)."""
    text = str(tag or "")
    if not text or "{" in text or "}" in text:
        raise ImproperlyConfigured(
            f"cluster_hash_tag {tag!r}: Redis Cluster needs one non-empty tag without braces "
            "so that every key of a store (and every script's keys) share one hash slot"
        )
    start = global_prefix.find("{")
    if start >= 0 and global_prefix.find("}", start) > start + 1:
        raise ImproperlyConfigured(
            f"global_keyprefix {global_prefix!r} carries a hash tag; on Redis Cluster keys are "
            f"placed by the cluster_hash_tag option (now {text!r}): move the tag there"
        )
    return "{" + text + "}" + global_prefix


def reachable_seeds(
    seeds: Sequence[tuple[str, int]], timeout: float, what: str = "redis cluster: seed"
) -> tuple[tuple[str, int], ...]:
    """The seeds in the order to try them: those that accepted a TCP connection when this
    process first asked, then the others (each logged then, once). The client tries them in
    that order and stops at the first that answers, so a dead seed costs nothing while a
    live one is left, and is still there should it come back when the others are gone.

    Asked once per process and seed list: every store, subscription and result-wait lookup
    makes a client, and a blackholed seed would hold the event loop for ``timeout`` each
    time. Once connected, redis-py replaces the seeds by the nodes the cluster names.
    Sentinel lists are ordered the same way (``what`` names the kind in the log line)."""
    key = tuple(seeds)
    if key not in _probed:
        found, dead = [], []
        for host, port in key:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
            except OSError as exc:
                logger.warning("%s %s:%s unreachable (%s)", what, host, port, exc)
                dead.append((host, port))
                continue
            found.append((host, port))
        _probed[key] = (*found, *dead)
    return _probed[key]


class ClusterPipe(_PipelineBase):
    """A cluster pipeline that also takes ``PUBLISH`` (sent once the pipeline has run), and
    whose scripts always run.

    A publish is a notification, not stored data: sending it after the stored data (the
    result, the queued message) is what subscribers need, and a retried pipeline resends
    its publishes as the plain-Redis pipeline would.

    A script is sent whole (``EVAL``) rather than by its SHA: redis-py's cluster pipeline
    does not load scripts first, a node's script cache starts empty (a replica promoted by
    a failover too), and inside a MULTI a ``NOSCRIPT`` fails that command alone while the
    others run, so a retry would repeat them. Redis caches the compiled script either way.
    """

    def __init__(self, client: ClusterClient, transaction: bool | None = None) -> None:
        # (types-redis describes redis-py 4's signature; redis-py 8 takes the transaction)
        super().__init__(client, transaction)  # type: ignore[call-arg]
        self.cluster_client = client
        self._publishes: list[tuple[Any, Any]] = []

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        source = self.cluster_client.sources.get(sha)
        if source is None:
            return cast(Any, super()).evalsha(sha, numkeys, *keys_and_args)
        return cast(Any, self).eval(source, numkeys, *keys_and_args)  # (types-redis lacks it)

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> ClusterPipe:
        self._publishes.append((channel, message))
        return self

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        publishes, self._publishes = self._publishes, []
        replies: list[Any] = []
        if len(self):
            async with self.cluster_client.turn():
                replies = await super().execute(raise_on_error, allow_redirections)
        send = cast(Any, self.cluster_client).publish  # (missing from types-redis)
        replies += await asyncio.gather(*(send(channel, data) for channel, data in publishes))
        return replies

    async def reset(self) -> None:
        self._publishes = []
        await cast(Any, super()).reset()


class ClusterClient(_ClientBase):
    """redis-py's asyncio cluster client whose pipelines are :class:`ClusterPipe`, and whose
    commands wait for a free connection as the plain-Redis pool does.

    redis-py's cluster client raises ``MaxConnectionsError`` (a ConnectionError, which the
    callers would retry and log as an outage) when a node's pool is full; here at most
    ``max_connections`` commands and pipelines run at once, each waiting up to
    ``pool_timeout`` for its turn. The nodes' own pools get :data:`HEADROOM` more, for the
    subscriptions that hold a connection each."""

    def __init__(self, *args: Any, pool_timeout: float = 20.0, **kwargs: Any) -> None:
        limit = int(kwargs.get("max_connections", 100))
        kwargs["max_connections"] = limit + HEADROOM
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(limit)
        self._pool_timeout = pool_timeout
        self.sources: dict[str, str] = {}
        """The source of every registered script, by SHA (for :class:`ClusterPipe`)."""

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the ``max_connections`` turns (ConnectionError after ``pool_timeout``)."""
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._turns.acquire()
        except TimeoutError as exc:
            raise redis_errors.ConnectionError(
                f"no free Redis Cluster connection within {self._pool_timeout:g} s"
            ) from exc
        try:
            yield
        finally:
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def register_script(self, script: Any) -> Any:
        registered = cast(Any, super()).register_script(script)
        source = script.decode() if isinstance(script, bytes) else str(script)
        self.sources[registered.sha] = source
        return registered

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipe:
        if shard_hint:
            raise ImproperlyConfigured("shard_hint has no meaning on Redis Cluster")
        return ClusterPipe(self, bool(transaction))


def cluster_client(
    seeds: Sequence[tuple[str, int]],
    connection: dict[str, Any],
    max_connections: int,
    pool_timeout: float = 20.0,
) -> ClusterClient:
    """A cluster client over the reachable ``seeds``, with redis-py's own retries off (the
    callers retry with their policy; redis-py still follows ``MOVED``/``ASK`` redirections
    and refreshes its slot table after a connection error)."""
    kwargs = {k: v for k, v in connection.items() if k not in ("db", "host", "port", "path")}
    timeout = float(kwargs.get("socket_connect_timeout") or 5.0)
    nodes = [ClusterNode(host, port) for host, port in reachable_seeds(seeds, timeout)]
    return ClusterClient(
        startup_nodes=nodes,
        max_connections=max_connections,
        pool_timeout=pool_timeout,
        retry=cast(Any, AsyncRetry(NoBackoff(), 0)),
        **kwargs,
    )
