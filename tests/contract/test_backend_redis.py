"""RedisBackend: the backend contract plus Celery's key layout and bad-data handling.

Needs the Redis server of ``CELERIAC_TEST_REDIS_URL`` (see ``tests/services.py``).
Every test uses its own ``global_keyprefix`` and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from celeriac import states
from celeriac.backends.base import ResultBackend
from celeriac.engines.redis.results import RedisBackend
from celeriac.exceptions import SerializationError
from celeriac.protocol.serializers import JSON
from celeriac.testing.contract.backend import BackendContract, BackendFactory, make_meta
from tests.contract.test_transport_redis import REDIS_URL, delete_prefixed, redis_or_skip

pytestmark = pytest.mark.redis


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = await redis_or_skip()
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def make_backend(raw: aioredis.Redis, prefix: str) -> AsyncIterator[BackendFactory]:
    """Factory of connected backends sharing this test's key prefix."""
    made: list[RedisBackend] = []

    async def make(*, expires: float | None, **options: Any) -> ResultBackend:
        backend = RedisBackend(
            REDIS_URL,
            serializer=JSON,
            expires=expires,
            options={"global_keyprefix": prefix, **options},
        )
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()
    await delete_prefixed(raw, prefix)


class TestRedisBackend(BackendContract):
    @pytest.fixture
    async def backend(self, make_backend: BackendFactory) -> ResultBackend:
        return await make_backend(expires=3600)


def _tid() -> str:
    return str(uuid.uuid4())


async def test_store_is_setex_plus_publish_on_celery_key(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    backend = await make_backend(expires=3600)
    tid = _tid()
    key = f"{prefix}celery-task-meta-{tid}"
    pubsub = raw.pubsub()
    await pubsub.subscribe(key)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    meta = make_meta(tid)
    await backend.store([(tid, meta)])
    assert json.loads(await raw.get(key))["status"] == "SUCCESS"
    assert 3590 < await raw.ttl(key) <= 3600
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    await pubsub.aclose()
    assert message is not None and json.loads(message["data"])["task_id"] == tid


async def test_store_loads_its_script_when_the_server_does_not_know_it(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    """The store script goes out as a bare EVALSHA; a NOSCRIPT reply (a restarted server)
    loads the script and stores anyway."""
    backend = await make_backend(expires=3600)
    assert isinstance(backend, RedisBackend) and backend._store_script is not None
    backend._store_script.sha = "0" * 40  # type: ignore[attr-defined]  # unknown to Redis
    tid = _tid()
    await backend.store([(tid, make_meta(tid))])
    assert json.loads(await raw.get(f"{prefix}celery-task-meta-{tid}"))["status"] == "SUCCESS"


async def test_no_expiry_uses_plain_set(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    backend = await make_backend(expires=None)
    tid = _tid()
    await backend.store([(tid, make_meta(tid))])
    assert await raw.ttl(f"{prefix}celery-task-meta-{tid}") == -1


async def test_reads_documents_written_by_celery(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    """Celery 5.7 (aware date_done) and 5.3 (naive date_done) documents, as written."""
    backend = await make_backend(expires=3600)
    new, old = _tid(), _tid()
    doc_57 = (
        '{"status": "SUCCESS", "result": 5, "traceback": null, "children": [], '
        f'"date_done": "2026-11-22T04:59:03.595560+00:00", "task_id": "{new}"}}'
    )
    doc_53 = (
        '{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["boom"], '
        '"exc_module": "builtins"}, "traceback": "Traceback...", "children": [], '
        f'"date_done": "2024-01-02T03:04:05.123456", "task_id": "{old}"}}'
    )
    await raw.set(f"{prefix}celery-task-meta-{new}", doc_57, ex=3600)
    await raw.set(f"{prefix}celery-task-meta-{old}", doc_53, ex=3600)
    got_new, got_old = await backend.get([new, old])
    assert got_new is not None and got_new["result"] == 5
    assert got_old is not None and got_old["result"]["exc_type"] == "ValueError"
    naive = dt.datetime.fromisoformat(got_old["date_done"])
    assert naive.tzinfo is None and naive.year == 2024
    assert await backend.wait(old, 5) == got_old


async def test_group_layout_matches_celery(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    backend = await make_backend(expires=3600)
    gid, ids = _tid(), [_tid(), _tid()]
    await backend.save_group(gid, ids)
    stored = json.loads(await raw.get(f"{prefix}celery-taskset-meta-{gid}"))
    assert stored == {"result": [[gid, None], [[[ids[0], None], None], [[ids[1], None], None]]]}


async def test_chord_size_from_celery_client_and_cleanup(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    """A size Celery's client set in ``.s`` wins; completion leaves only the ``done`` mark."""
    backend = await make_backend(expires=3600)
    gid = _tid()
    base = f"{prefix}celery-taskset-meta-{gid}"
    await raw.set(f"{base}.s", 2, ex=3600)
    assert await backend.chord_part_done(gid, 0, ("a", states.SUCCESS, 1), 99) is None
    parts = await backend.chord_part_done(gid, 1, ("b", states.SUCCESS, 2), 99)
    assert parts == [("a", states.SUCCESS, 1), ("b", states.SUCCESS, 2)]
    assert await raw.exists(f"{base}.j", f"{base}.s", f"{base}.d", f"{base}.t") == 0
    assert await raw.get(f"{base}.c") == b"done"


async def test_chord_parts_recorded_by_a_celery_worker_count(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    """Celery 5.5 writes ``.j`` members with its own spacing; they are counted and decoded."""
    backend = await make_backend(expires=3600)
    gid = _tid()
    base = f"{prefix}celery-taskset-meta-{gid}"
    await raw.zadd(f"{base}.j", {'[1, "t0", "SUCCESS", 0]': 0})
    parts = await backend.chord_part_done(gid, 1, ("t1", states.SUCCESS, 2), 2)
    assert parts == [("t0", states.SUCCESS, 0), ("t1", states.SUCCESS, 2)]


async def test_garbage_result_raises_naming_the_key_and_listener_survives(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    backend = await make_backend(expires=3600)
    bad, good = _tid(), _tid()
    key = f"{prefix}celery-task-meta-{bad}"
    await raw.set(key, b"\xffnot json")
    with pytest.raises(SerializationError, match=bad):
        await backend.get([bad])
    # A garbage PUBLISH reaches only the waiter of that channel.
    bad_waiter = asyncio.create_task(backend.wait(_tid(), 30))
    good_waiter = asyncio.create_task(backend.wait(good, 30))
    await asyncio.sleep(0.2)
    await raw.delete(key)
    waiting_on = f"{prefix}celery-task-meta-"
    channels = [c.decode() for c in await raw.pubsub_channels(waiting_on + "*")]
    bad_channel = next(c for c in channels if not c.endswith(good))
    await raw.publish(bad_channel, b"{{{ garbage")
    with pytest.raises(SerializationError, match=bad_channel):
        await asyncio.wait_for(bad_waiter, 5)
    await backend.store([(good, make_meta(good))])
    doc = await asyncio.wait_for(good_waiter, 5)
    assert doc is not None and doc["task_id"] == good


async def test_waiters_unsubscribe_when_done(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    backend = await make_backend(expires=3600)
    tids = [_tid() for _ in range(5)]
    waiters = [asyncio.create_task(backend.wait(tid, 30)) for tid in tids]
    await asyncio.sleep(0.2)
    pattern = f"{prefix}celery-task-meta-*"
    assert len(await raw.pubsub_channels(pattern)) == 5
    await backend.store([(tid, make_meta(tid)) for tid in tids])
    await asyncio.gather(*waiters)
    for _ in range(50):
        if not await raw.pubsub_channels(pattern):
            break
        await asyncio.sleep(0.05)
    assert await raw.pubsub_channels(pattern) == []


async def test_set_chord_size_like_celery_client(
    make_backend: BackendFactory, raw: aioredis.Redis, prefix: str
) -> None:
    """``.s`` written as Celery 5.7's client does; workers pass no size; a reused id restarts."""
    backend = await make_backend(expires=3600)
    gid, lone = _tid(), _tid()
    base = f"{prefix}celery-taskset-meta-{gid}"
    assert await backend.chord_part_done(lone, 0, ("x", states.SUCCESS, 0), None) is None
    assert await backend.chord_part_done(lone, 1, ("y", states.SUCCESS, 1), None) is None
    await backend.set_chord_size(gid, 2)
    assert await raw.get(f"{base}.s") == b"2" and 3590 < await raw.ttl(f"{base}.s") <= 3600
    assert await backend.chord_part_done(gid, 1, ("b", states.SUCCESS, 2), None) is None
    parts = await backend.chord_part_done(gid, 0, ("a", states.SUCCESS, 1), None)
    assert parts == [("a", states.SUCCESS, 1), ("b", states.SUCCESS, 2)]
    assert await backend.chord_part_done(gid, 0, ("a", states.SUCCESS, 1), None) is None
    await backend.set_chord_size(gid, 1)  # clears the done mark of the finished chord
    again = await backend.chord_part_done(gid, 0, ("c", states.SUCCESS, 3), None)
    assert again == [("c", states.SUCCESS, 3)]
