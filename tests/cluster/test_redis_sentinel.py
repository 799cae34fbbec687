"""celeriac behind Redis Sentinel: a primary, a replica and three sentinels this module starts.

One topology for the whole module (primary 16380, replica 16381, sentinels 26380-26382,
:mod:`tests.cluster.redis_sentinel`), killed in teardown even when a test fails. Broker,
result backend and beat store are one ``sentinel://`` list whose first sentinel is dead.
The fault tests fail the master over under load (a real ``celeriac worker``, a real
``celeriac beat``, a producer and a result waiter running through it): first a coordinated
``SENTINEL FAILOVER`` (the demoted master answers READONLY) with ``min_replicas=1``, then a
SIGKILL of the master with asynchronous replication. Each reports lost and duplicated
executions and the time until tasks run again (printed, never asserted on).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac import group
from celeriac.beat.stores import store_for_app
from celeriac.engines.redis.broker import RedisTransport
from celeriac.engines.redis.replication import NotReplicated
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.envelope import Envelope
from celeriac.result import AsyncResult
from celeriac.transport.base import Outgoing
from tests.cluster import sentinel_app
from tests.cluster.redis_sentinel import MASTER, SentinelTopology, ask
from tests.services import running_celeriac

pytestmark = pytest.mark.timeout(150)

DEAD_SENTINEL = 26399
"""A port nobody listens on, first in every sentinel list (logged once, then skipped)."""
DB = 3
WORKER = ["-A", "tests.cluster.sentinel_app", "worker", "-c", "4", "-P", "threads", "-l", "info"]
BEAT = ["-A", "tests.cluster.sentinel_app", "beat", "-l", "info"]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    started = SentinelTopology(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture
def url(topology: SentinelTopology) -> str:
    return f"sentinel://127.0.0.1:{DEAD_SENTINEL}/{DB};" + topology.url(db=DB)


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[object]:
    sentinel_app.configure(url, MASTER, prefix)
    yield sentinel_app.app
    sentinel_app.app.close()


def _env(url: str, prefix: str, record: Path, **extra: str) -> dict[str, str]:
    return {"SENTINEL_URL": url, "SENTINEL_MASTER": MASTER, "SENTINEL_PREFIX": prefix,
            "SENTINEL_RECORD": str(record), **extra}  # fmt: skip


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


def _keys(port: int, prefix: str) -> list[str]:
    return ask(port, "-n", str(DB), "--scan", "--pattern", f"*{prefix}*").split()


def test_worker_behind_sentinel(
    topology: SentinelTopology, app: object, url: str, prefix: str, tmp_path: Path
) -> None:
    """Tasks, results and a countdown through the master the sentinels name; the dead
    sentinel is logged once and skipped."""
    record, log = tmp_path / "record", tmp_path / "worker.log"
    with running_celeriac(WORKER, log, _env(url, prefix, record)) as worker:
        _wait_for(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 60,
                  "the worker to start")  # fmt: skip
        assert worker.poll() is None, log.read_text()
        results = [sentinel_app.add.delay(i, i) for i in range(20)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
        sent = time.time()
        assert sentinel_app.record.apply_async((7,), countdown=1).get(timeout=30) == 7
        assert dict(_executions(record))[7] >= sent + 1 - 0.05, "the countdown task ran early"
    master = topology.master()
    assert _keys(master, prefix) and _keys(topology.other(master), prefix), "not replicated"
    text = log.read_text()
    assert text.count(f"redis sentinel 127.0.0.1:{DEAD_SENTINEL} unreachable") == 1, text


def test_beat_store_behind_sentinel(app: object) -> None:
    """The beat store's lease and claims on the Sentinel-named master."""

    async def run() -> None:
        store = store_for_app(sentinel_app.app)
        try:
            assert await store.acquire_lease("beat-a", 10)
            assert not await store.acquire_lease("beat-b", 10)
            assert await store.claim("beat-a", "tick", None, 100.0)
            assert await store.load() == {"tick": 100.0}
        finally:
            await store.close()

    asyncio.run(run())


def test_min_replicas_waits_for_the_replica(
    topology: SentinelTopology, app: object, url: str, prefix: str
) -> None:
    """``min_replicas=1``: a publish returns once the replica has it; with the replica
    stalled (``DEBUG SLEEP``) it raises NotReplicated naming the option, after storing
    the message on the master only."""
    options = {"master_name": MASTER, "global_keyprefix": prefix, "min_replicas": 1,
               "min_replicas_timeout": 0.3}  # fmt: skip
    queue = "q"
    master = topology.master()

    async def run() -> None:
        transport = RedisTransport(url, options=options)
        await transport.connect()
        try:
            await transport.publish([_outgoing(queue, b"one")])
            stall = threading.Thread(
                target=ask, args=(topology.other(master), "debug", "sleep", "3")
            )
            stall.start()
            await asyncio.sleep(0.2)  # the replica is asleep: it acknowledges nothing
            with pytest.raises(NotReplicated, match="min_replicas=1"):
                await transport.publish([_outgoing(queue, b"two")])
            await asyncio.to_thread(stall.join)
            await transport.publish([_outgoing(queue, b"three")])
        finally:
            await transport.close()

    asyncio.run(run())
    assert ask(master, "-n", str(DB), "llen", prefix + queue).strip() == "3"
    with pytest.raises(ImproperlyConfigured, match="min_replicas"):
        RedisTransport(url, options={**options, "min_replicas": "two"})


def _outgoing(queue: str, body: bytes) -> Outgoing:
    return Outgoing(Envelope(body, {}), routing_key=queue)


# --- the faults (last: each fails the master over) ---------------------------------------


def _still_missing(late: dict[int, AsyncResult]) -> list[int]:
    """Of the ``add(n, 1)`` results not read in time, those still not there."""
    missing = []
    for n, result in late.items():
        try:
            got = result.get(timeout=10)
        except Exception:  # counted, and asserted on by the caller
            got = None
        if got != n + 1:
            missing.append(n)
    return missing


def _under_load(
    topology: SentinelTopology,
    url: str,
    prefix: str,
    tmp_path: Path,
    fault: Callable[[], int],
    label: str,
    min_replicas: int = 0,
) -> None:
    """Queue 6,000 tasks and 200 countdowns, start a worker and beat, then ``fault()``
    the master with a producer publishing 2,000 more and a waiter reading results through
    it. Every task queued (and replicated) before the fault runs; the rest is reported
    (with ``min_replicas``, no acknowledged publish may be lost either)."""
    sentinel_app.configure(url, MASTER, prefix, min_replicas)
    queued, extra, later = 6_000, 2_000, range(100_000, 100_200)
    record, log, beat_log = tmp_path / "record", tmp_path / "worker.log", tmp_path / "beat.log"
    for start in range(0, queued, 1000):
        group(sentinel_app.record.s(n) for n in range(start, start + 1000)).apply_async()
    group(sentinel_app.record.s(n) for n in later).apply_async(countdown=6)
    topology.wait_replicated(10)
    refused: list[int] = []
    published: list[int] = []
    waited: list[float] = []
    missing: list[int] = []

    def produce() -> None:
        for n in range(queued, queued + extra, 50):
            batch = list(range(n, n + 50))
            try:
                group(sentinel_app.record.s(i) for i in batch).apply_async()
            except Exception:  # the caller is told: counted apart from the lost ones
                refused.extend(batch)
            else:
                published.extend(batch)
            time.sleep(0.01)

    late: dict[int, AsyncResult] = {}  # results not read in 20 s: read again once all is done
    refused_waits: list[int] = []

    def wait_results() -> None:
        for n in range(40):
            began = time.monotonic()
            try:
                result = sentinel_app.add.delay(n, 1)
            except Exception:  # the caller was told (min_replicas): not a lost result
                refused_waits.append(n)
                continue
            try:
                got = result.get(timeout=20)
            except Exception:  # a re-run after the failover may take longer: see below
                got = None
            if got != n + 1:
                late[n] = result
            waited.append(time.monotonic() - began)
            time.sleep(0.1)

    producer = threading.Thread(target=produce)
    waiter = threading.Thread(target=wait_results)
    env = _env(url, prefix, record, SENTINEL_MIN_REPLICAS=str(min_replicas))
    with (
        running_celeriac(WORKER, log, env) as worker,
        running_celeriac(BEAT, beat_log, {**env, "SENTINEL_BEAT": "1"}) as beat,
    ):
        _wait_for(lambda: len(_executions(record)) >= queued // 3 or worker.poll() is not None,
                  90, "a third of the tasks to run")  # fmt: skip
        producer.start()
        waiter.start()
        _wait_for(lambda: len(published) >= 500, 30, "the producer to get going")
        faulted = time.time()
        failover = topology.wait_failover(fault(), 60)
        producer.join(timeout=60)
        waiter.join(timeout=60)
        expected = set(range(queued)) | set(published) | set(later)
        _wait_for(lambda: expected <= {n for n, _ in _executions(record)}
                  or worker.poll() is not None
                  or time.time() > faulted + 45, 60, "the rest of the tasks")  # fmt: skip
        time.sleep(1.5)  # let duplicates (if any) and a few more beat ticks show up
        missing.extend(_still_missing(late))
        alive, beat_alive = worker.poll() is None, beat.poll() is None
    runs = _executions(record)
    ticks_after = [t for n, t in runs if n == sentinel_app.TICK and t > faulted + failover]
    tasks = [(n, t) for n, t in runs if n != sentinel_app.TICK and n not in later]
    counts = collections.Counter(n for n, _ in runs if n != sentinel_app.TICK)
    times = sorted([faulted, *(t for _, t in tasks if t >= faulted)])
    stall, resumed = max((b - a, b) for a, b in itertools.pairwise(times))
    lost_queued = [n for n in [*range(queued), *later] if n not in counts]
    lost_published = [n for n in published if n not in counts]
    duplicated = sum(c - 1 for c in counts.values())
    print(f"\nREDIS SENTINEL {label} (min_replicas={min_replicas}): {queued} queued + "
          f"{len(later)} countdowns + {extra} published through the fault (after "
          f"{sum(1 for _, t in tasks if t < faulted)} runs); new master named "
          f"{failover:.2f}s after it; lost {len(lost_queued)} queued, {len(lost_published)} "
          f"published; publishes raised {len(refused)}; duplicated {duplicated}; longest "
          f"stall {stall:.2f}s, running again {resumed - faulted:.2f}s after the fault, all "
          f"done {times[-1] - faulted:.2f}s after it; result waits: {len(missing)} missing, "
          f"{len(late) - len(missing)} late, {len(refused_waits)} refused at publish, "
          f"longest {max(waited):.2f}s; beat ticks after it {len(ticks_after)}")  # fmt: skip
    assert alive, f"the worker exited during the failover:\n{log.read_text()[-3000:]}"
    assert beat_alive, f"beat exited during the failover:\n{beat_log.read_text()[-3000:]}"
    assert not lost_queued, f"{len(lost_queued)} replicated tasks never ran: {lost_queued[:20]}"
    assert ticks_after, f"beat sent nothing after the failover:\n{beat_log.read_text()[-3000:]}"
    if min_replicas:  # without it, a publish (and so its result) may be lost: reported
        assert not lost_published, f"acknowledged publishes lost: {lost_published[:20]}"
        assert not missing, f"results never read: {missing}\n{log.read_text()[-3000:]}"


@pytest.mark.parametrize("min_replicas", [0, 1])
def test_coordinated_failover(
    topology: SentinelTopology,
    app: object,
    url: str,
    prefix: str,
    tmp_path: Path,
    min_replicas: int,
) -> None:
    """``SENTINEL FAILOVER``: the live master is demoted and answers writes with READONLY,
    which sends every connection back to the sentinels. With ``min_replicas=1``
    publishes and acks wait for the replica: a write the demoted master took alone is
    refused loudly (a publish raises, an ack fails and its task is redelivered), never
    acknowledged and lost; without it such writes are reported lost."""
    topology.wait_replicated(30)  # the demoted master of a test before has caught up
    _under_load(topology, url, prefix, tmp_path, topology.switch, "SENTINEL FAILOVER", min_replicas)


def test_master_killed_under_load(
    topology: SentinelTopology, app: object, url: str, prefix: str, tmp_path: Path
) -> None:
    """SIGKILL the master (asynchronous replication): the sentinels promote the replica
    and worker, beat, producer and waiter follow it."""

    def kill() -> int:
        master = topology.master()
        topology.kill(master)
        return master

    topology.wait_replicated(30)  # the demoted master of the test before has caught up
    _under_load(topology, url, prefix, tmp_path, kill, "SIGKILL")
