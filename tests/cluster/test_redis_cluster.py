"""celeriac on a 6-node Redis Cluster (3 primaries + 3 replicas) that this module starts.

One cluster for the whole module (ports 17000-17005, :mod:`tests.cluster.redis_cluster`),
killed in teardown even when a test fails. Worker processes are real ``celeriac worker``
subprocesses on a ``redis+cluster://`` URL whose seed list starts with a dead node. The
fault test kills the primary serving the broker's hash tag mid-run and reports lost and
duplicated executions and the time until tasks run again (printed, never asserted on).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import group
from celeriac.backends.base import ResultBackend
from celeriac.beat.stores import store_for_app
from celeriac.engines.redis.broker import RedisTransport
from celeriac.engines.redis.cluster import DEFAULT_TAGS, HEADROOM
from celeriac.engines.redis.connection import connect_redis, parse_redis_url, release
from celeriac.engines.redis.events import RedisEventBus
from celeriac.engines.redis.results import RedisBackend
from celeriac.events.bus import EventChannel, Published
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import JSON
from celeriac.testing.contract.backend import BackendContract, BackendFactory
from celeriac.testing.contract.transport import MakeTransport, TransportContract
from celeriac.transport.base import Transport
from tests.cluster import app as cluster_app
from tests.cluster.redis_cluster import PORTS, RedisCluster6
from tests.services import running_celeriac

pytestmark = pytest.mark.timeout(150)

DEAD_SEED = 17999
"""A port nobody listens on, first in every seed list (it must be logged once, then skipped)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster6]:
    topology = RedisCluster6(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield topology.start()
    finally:
        topology.stop()


@pytest.fixture
def url(cluster: RedisCluster6) -> str:
    return cluster.url(ports=(DEAD_SEED, *PORTS[:3]))


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[object]:
    cluster_app.configure(url, prefix)
    yield cluster_app.app
    cluster_app.app.close()


def _worker_env(url: str, prefix: str, record: Path) -> dict[str, str]:
    return {"CLUSTER_URL": url, "CLUSTER_PREFIX": prefix, "CLUSTER_RECORD": str(record)}


def _worker_args(*extra: str) -> list[str]:
    return ["-A", "tests.cluster.app", "worker", "-c", "4", "-P", "threads", "-l", "info",
            "-Q", "celery,alpha,beta", *extra]  # fmt: skip


def _executions(record: Path) -> list[tuple[int, float]]:
    if not record.exists():
        return []
    rows = (line.split() for line in record.read_text().splitlines())
    return [(int(row[1]), float(row[3])) for row in rows if len(row) == 4]


def _wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def test_worker_end_to_end(
    cluster: RedisCluster6, app: object, url: str, prefix: str, tmp_path: Path
) -> None:
    """Queues, results, a countdown, revoke and control ping on Cluster; every key of a
    store under its hash tag."""
    record = tmp_path / "record"
    log = tmp_path / "worker.log"
    with running_celeriac(_worker_args(), log, _worker_env(url, prefix, record)) as worker:
        _wait_for(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 60,
                  "the worker to start")  # fmt: skip
        assert worker.poll() is None, log.read_text()
        results = [cluster_app.add.apply_async((i, i), queue=q)
                   for i, q in enumerate(["celery", "alpha", "beta"] * 5)]  # fmt: skip
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(15)]

        sent = time.time()
        later = cluster_app.record.apply_async((1,), countdown=2)
        doomed = cluster_app.record.apply_async((2,), countdown=3, queue="alpha")
        doomed.revoke()
        assert later.get(timeout=30) == 1
        ran = dict(_executions(record))
        assert ran[1] >= sent + 2 - 0.05, "the countdown task ran early"
        time.sleep(2)  # past the revoked task's due time
        assert 2 not in dict(_executions(record)), "a revoked task ran"

        replies = cluster_app.app.control.ping(timeout=5)
        assert replies, "no worker answered a broadcast ping over Cluster pub/sub"

    # Every key of a store is in its tag's slot: scripts and MULTIs never cross slots.
    keys = cluster.keys(f"*{prefix}*")
    tags = {key.split("}", 1)[0] + "}" for key in keys}
    assert tags == {"{celeriac}", "{celeriac_results}"}, sorted(keys)
    assert f"{{celeriac_results}}{prefix}celery-task-meta-{later.id}" in keys
    assert f"{{celeriac}}{prefix}_kombu.binding.alpha" in keys
    text = log.read_text()
    assert text.count(f"seed 127.0.0.1:{DEAD_SEED} unreachable") == 1, text


def test_beat_store_on_cluster(app: object) -> None:
    """Lease and compare-and-set claims work on the beat store's own slot."""

    async def run() -> None:
        store = store_for_app(cluster_app.app)
        try:
            assert await store.acquire_lease("beat-a", 10)
            assert not await store.acquire_lease("beat-b", 10)
            assert await store.claim("beat-a", "tick", None, 100.0)
            assert not await store.claim("beat-a", "tick", None, 101.0)
            assert await store.load() == {"tick": 100.0}
            assert await store.lease_holder() == "beat-a"
        finally:
            await store.close()

    asyncio.run(run())


async def test_events_cross_the_cluster(cluster: RedisCluster6, prefix: str) -> None:
    """Events published by a bus seeded from the replicas reach a subscriber seeded from a
    primary, by routing key; a batch is one pipeline's worth of publishes."""
    options = {"global_keyprefix": prefix}
    sender = RedisEventBus(cluster.url(ports=PORTS[3:]), options, EventChannel())
    receiver = RedisEventBus(cluster.url(ports=PORTS[:1]), options, EventChannel())
    try:
        subscription = await receiver.subscribe("task.#")
        sent = [Published(f"task.{n}", Envelope(b"[]", {"n": n})) for n in range(3)]
        await sender.publish([*sent, Published("worker.heartbeat", Envelope(b"[]", {}))])
        got: list[Envelope] = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            got += await subscription.receive(1.0)
        assert sorted(e.headers["n"] for e in got) == [0, 1, 2]
        await subscription.close()
    finally:
        await sender.close()
        await receiver.close()


async def test_commands_wait_for_a_free_connection(cluster: RedisCluster6, prefix: str) -> None:
    """More concurrent commands than ``max_connections`` (and than a node's pool holds)
    wait their turn instead of failing with redis-py's MaxConnectionsError."""
    settings = parse_redis_url(cluster.url(), {"max_connections": 2, "global_keyprefix": prefix})
    client = connect_redis(settings)
    try:
        many = 4 * (2 + HEADROOM)
        key = settings.key_prefix + "nothing"
        replies = await asyncio.gather(
            *(client.execute_command("BLPOP", key, 0.05) for _ in range(many))
        )
        assert replies == [None] * many
    finally:
        await release(client)


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("cluster_hash_tag", "", "cluster_hash_tag"),
        ("global_keyprefix", "{app}:", "global_keyprefix"),
    ],
)
def test_cross_slot_layout_refused_at_start(
    url: str, tmp_path: Path, option: str, value: str, named: str
) -> None:
    """A layout whose keys would not share a slot stops the worker before any task."""
    log = tmp_path / "worker.log"
    env = {"CLUSTER_URL": url, "CLUSTER_OPTION": f"{option}={value}"}
    with running_celeriac(_worker_args(), log, env) as worker:
        worker.wait(timeout=60)
    text = log.read_text()
    assert worker.returncode != 0, text
    assert named in text and "Redis Cluster" in text, text


# --- the engine contracts, on the cluster -------------------------------------------------


class TestClusterTransport(TransportContract):
    """Every transport behaviour the other engines pass, over ``redis+cluster://``."""

    @pytest.fixture
    async def make_transport(
        self, cluster: RedisCluster6, prefix: str
    ) -> AsyncIterator[MakeTransport]:
        made: list[RedisTransport] = []

        async def make(**options: Any) -> Transport:
            options = {"global_keyprefix": prefix, **options}
            transport = RedisTransport(cluster.url(), options=options)
            await transport.connect()
            made.append(transport)
            return transport

        yield make
        for transport in made:
            await transport.close()

    @pytest.fixture
    async def transport(self, make_transport: MakeTransport) -> Transport:
        return await make_transport()


class TestClusterBackend(BackendContract):
    """Every result-store behaviour, over ``redis+cluster://`` (waits on the slot owner)."""

    @pytest.fixture
    async def make_backend(
        self, cluster: RedisCluster6, prefix: str
    ) -> AsyncIterator[BackendFactory]:
        made: list[RedisBackend] = []

        async def make(*, expires: float | None, **options: Any) -> ResultBackend:
            options = {"global_keyprefix": prefix, **options}
            backend = RedisBackend(cluster.url(), serializer=JSON, expires=expires, options=options)
            await backend.connect()
            made.append(backend)
            return backend

        yield make
        for backend in made:
            await backend.close()

    @pytest.fixture
    async def backend(self, make_backend: BackendFactory) -> ResultBackend:
        return await make_backend(expires=3600)


# --- faults (last: each leaves one primary dead, its replica promoted) -------------------


def test_primary_killed_mid_run(
    cluster: RedisCluster6, app: object, url: str, prefix: str, tmp_path: Path
) -> None:
    """Kill the primary serving the broker's slot under load, a producer publishing through
    the kill: the replica takes over, worker and producer follow it. Every task queued (and
    replicated) before the kill runs; the rest is reported: lost, duplicated, publishes that
    raised, and the time until tasks run again."""
    queued, extra = 7_000, 3_000
    record = tmp_path / "record"
    log = tmp_path / "worker.log"
    for start in range(0, queued, 1000):
        group(cluster_app.record.s(n) for n in range(start, start + 1000)).apply_async()
    victim = cluster.owner_of("{" + DEFAULT_TAGS["broker"] + "}")
    cluster.wait_replicated(victim, 10)
    refused: list[int] = []
    published: list[int] = []

    def produce() -> None:
        for n in range(queued, queued + extra, 50):
            batch = list(range(n, n + 50))
            try:
                group(cluster_app.record.s(i) for i in batch).apply_async()
            except Exception:  # the caller is told: counted apart from the lost ones
                refused.extend(batch)
            else:
                published.extend(batch)
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    with running_celeriac(_worker_args(), log, _worker_env(url, prefix, record)) as worker:
        _wait_for(lambda: len(_executions(record)) >= queued // 3 or worker.poll() is not None,
                  90, "a third of the tasks to run")  # fmt: skip
        producer.start()
        _wait_for(lambda: len(published) >= 500, 30, "the producer to get going")
        killed = time.time()
        cluster.kill(victim)
        producer.join(timeout=100)
        expected = set(range(queued)) | set(published)
        _wait_for(lambda: expected <= {n for n, _ in _executions(record)}
                  or worker.poll() is not None
                  or time.time() > killed + 60, 100, "the rest of the tasks")  # fmt: skip
        time.sleep(1)  # let duplicates (if any) show up
        alive = worker.poll() is None
    runs = _executions(record)
    counts = collections.Counter(n for n, _ in runs)
    times = sorted([killed, *(t for _, t in runs if t >= killed)])
    gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
    stall, resumed = max(gaps) if gaps else (float("nan"), killed)
    lost_queued = [n for n in range(queued) if n not in counts]
    lost_published = [n for n in published if n not in counts]
    duplicated = sum(c - 1 for c in counts.values())
    print(f"\nREDIS CLUSTER FAILOVER: {queued} queued + {extra} published through the kill "
          f"of primary :{victim} (after {sum(1 for _, t in runs if t < killed)} runs): "
          f"lost {len(lost_queued)} queued, {len(lost_published)} published; "
          f"publishes raised {len(refused)}; duplicated {duplicated}; "
          f"longest stall {stall:.2f}s, running again {resumed - killed:.2f}s after the kill, "
          f"all done {times[-1] - killed:.2f}s after it")  # fmt: skip
    assert alive, f"the worker exited during the failover:\n{log.read_text()[-3000:]}"
    assert not lost_queued, f"{len(lost_queued)} replicated tasks never ran: {lost_queued[:20]}"


def test_results_primary_killed_while_waiting(
    cluster: RedisCluster6, app: object, url: str, prefix: str, tmp_path: Path
) -> None:
    """Kill the primary serving the result store's slot while the client waits on results:
    the waits follow the promoted replica. Reports results missing and the longest wait."""
    total = 2000
    record = tmp_path / "record"
    log = tmp_path / "worker.log"
    victim = cluster.owner_of("{" + DEFAULT_TAGS["results"] + "}")
    with running_celeriac(_worker_args(), log, _worker_env(url, prefix, record)) as worker:
        _wait_for(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 60,
                  "the worker to start")  # fmt: skip
        results = [cluster_app.record.delay(n) for n in range(total)]
        waits: list[float] = []
        missing = 0
        for i, result in enumerate(results):
            if i == total // 4:
                killed = time.time()
                cluster.kill(victim)
            began = time.monotonic()
            try:
                got = result.get(timeout=60)
            except Exception:  # counted and reported, then asserted on
                got = None
            missing += got != i
            waits.append(time.monotonic() - began)
    print(f"\nREDIS CLUSTER RESULTS FAILOVER: {total} results, primary :{victim} killed "
          f"after {total // 4} were read; missing={missing} longest wait={max(waits):.2f}s, "
          f"all read {time.time() - killed:.2f}s after the kill")  # fmt: skip
    assert missing == 0, log.read_text()[-3000:]
