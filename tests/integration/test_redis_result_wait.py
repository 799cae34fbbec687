"""Waiting for Redis results: one round trip, nothing missed, one shared connection.

Both APIs are covered: ``RedisBackend.wait`` (what ``await result.aget()`` runs, on the
RESP3 listener) and ``AsyncResult.get()`` (the calling-thread waiter, which must not hop to
the portal). A small TCP proxy splits the listener's one write between ``SUBSCRIBE`` and
``GET`` and stores the result in between, the exact window a race would hide in.
Each test uses its own key prefix and ``client_name``, and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from celeriac import Celery
from celeriac.engines.redis.results import RedisBackend
from celeriac.exceptions import TimeoutError as ResultTimeout
from celeriac.protocol.serializers import JSON
from celeriac.result import _blocking_waiter
from tests.integration.test_redis_connection import RedisServer
from tests.services import (
    REDIS_URL,
    delete_prefixed,
    key_prefix,
    redis_address,
    redis_url_at,
    unavailable,
)

pytestmark = pytest.mark.redis

WAIT = 10.0


@pytest.fixture
def raw() -> Iterator[redis.Redis[bytes]]:
    client: redis.Redis[bytes] = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    yield client
    client.close()


@pytest.fixture
def prefix(raw: redis.Redis[bytes]) -> Iterator[str]:
    prefix = key_prefix("rw")
    yield prefix
    delete_prefixed(raw, prefix)


def doc(tid: str, status: str = "SUCCESS", result: Any = None) -> dict[str, Any]:
    return {"status": status, "result": result, "traceback": None, "task_id": tid}


def store(client: redis.Redis[bytes], key: str, meta: dict[str, Any]) -> None:
    """SET EX + PUBLISH in one MULTI, as a Celery worker writes a result."""
    data = json.dumps(meta)
    pipe = client.pipeline(transaction=True)
    pipe.set(key, data, ex=60)
    pipe.publish(key, data)
    pipe.execute()


def pubsub_connections(client: redis.Redis[bytes], name: str) -> list[dict[str, Any]]:
    """The subscribed connections named ``name``."""
    return [c for c in client.client_list(_type="pubsub") if c.get("name") == name]


def eventually(check: Callable[[], bool], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def aeventually(check: Callable[[], bool], within: float = 3.0) -> bool:
    """:func:`eventually` for async tests (the loop keeps running meanwhile)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class SplitProxy:
    """A TCP proxy to the test Redis that splits a ``SUBSCRIBE`` + ``GET`` write.

    Once armed, it forwards the next SUBSCRIBE alone, waits until Redis has the
    subscription, runs the armed action (which stores the result), and only then forwards
    the GET.
    """

    def __init__(self, raw: redis.Redis[bytes]) -> None:
        self.raw = raw
        self.between: Callable[[], None] | None = None
        self.split = False
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, between: Callable[[], None]) -> None:
        self.split, self.between = False, between

    def url(self) -> str:
        return redis_url_at("127.0.0.1", self.port)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(redis_address())
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_redis: bool) -> None:
        try:
            while data := src.recv(65536):
                if to_redis and self.between and b"\r\nSUBSCRIBE\r\n" in data:
                    data = self._split(data, dst)
                dst.sendall(data)
        except OSError:
            pass

    def _split(self, data: bytes, dst: socket.socket) -> bytes:
        """Forward up to the GET after the SUBSCRIBE, store, return the rest."""
        at = data.index(b"\r\nSUBSCRIBE\r\n")
        cut = data.find(b"*2\r\n$3\r\nGET\r\n", at)
        head, rest = (data, b"") if cut < 0 else (data[:cut], data[cut:])
        dst.sendall(head)
        channel = head.rsplit(b"\r\n", 2)[-2].decode()
        assert eventually(lambda: self.raw.pubsub_numsub(channel)[0][1] > 0)
        between, self.between = self.between, None
        self.split = bool(rest)
        assert between is not None
        between()
        return rest

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


# -- the asyncio API (RedisBackend.wait on the RESP3 listener) -----------------------------


async def make_backend(url: str, prefix: str, name: str = "") -> RedisBackend:
    options: dict[str, Any] = {"global_keyprefix": prefix}
    if name:
        options["client_name"] = name
    backend = RedisBackend(url, serializer=JSON, expires=60, options=options)
    await backend.connect()
    return backend


async def test_async_result_stored_between_subscribe_and_read(
    raw: redis.Redis[bytes], prefix: str
) -> None:
    proxy = SplitProxy(raw)
    backend = await make_backend(proxy.url(), prefix)
    key = f"{prefix}celery-task-meta-"
    try:
        for n in range(2):  # the first wait opens the connection, the second finds it
            tid = str(uuid.uuid4())
            proxy.arm(functools.partial(store, raw, key + tid, doc(tid, result=n)))
            got = await asyncio.wait_for(backend.wait(tid, WAIT), WAIT)
            assert proxy.split, "SUBSCRIBE and GET were not written together"
            assert got is not None and got["result"] == n
    finally:
        await backend.close()
        proxy.close()


async def test_async_many_waiters_share_one_connection(
    raw: redis.Redis[bytes], prefix: str
) -> None:
    """300 waiters on 200 keys, results stored before and during the waits."""
    name = f"rw-{uuid.uuid4().hex[:8]}"
    backend = await make_backend(REDIS_URL, prefix, name)
    tids = [str(uuid.uuid4()) for _ in range(200)]
    key = f"{prefix}celery-task-meta-"
    for tid in tids[:50]:
        store(raw, key + tid, doc(tid, result=tid))
    try:
        waiters = [asyncio.create_task(backend.wait(tid, WAIT)) for tid in tids + tids[100:]]
        await asyncio.sleep(0.2)
        [listener] = pubsub_connections(raw, name)
        for tid in tids[50:]:
            store(raw, key + tid, doc(tid, result=tid))
        docs = await asyncio.wait_for(asyncio.gather(*waiters), WAIT)
        assert [d["result"] if d else None for d in docs] == tids + tids[100:]
        assert await aeventually(lambda: not raw.pubsub_channels(f"{prefix}*"))
        assert listener["id"] in {c["id"] for c in raw.client_list()}  # kept for later waits
    finally:
        await backend.close()


async def test_async_timeout_returns_the_latest_state(raw: redis.Redis[bytes], prefix: str) -> None:
    backend = await make_backend(REDIS_URL, prefix)
    tid = str(uuid.uuid4())
    key = f"{prefix}celery-task-meta-{tid}"
    store(raw, key, doc(tid, "STARTED"))
    try:
        waiter = asyncio.create_task(backend.wait(tid, 0.5))
        await asyncio.sleep(0.1)
        store(raw, key, doc(tid, "RETRY"))  # published: the latest state is RETRY now
        got = await asyncio.wait_for(waiter, WAIT)
        assert got is not None and got["status"] == "RETRY"
    finally:
        await backend.close()


async def test_async_waiter_resubscribes_after_its_connection_is_killed(
    raw: redis.Redis[bytes], prefix: str
) -> None:
    name = f"rw-{uuid.uuid4().hex[:8]}"
    backend = await make_backend(REDIS_URL, prefix, name)
    tid = str(uuid.uuid4())
    try:
        waiter = asyncio.create_task(backend.wait(tid, WAIT))
        await asyncio.sleep(0.2)
        [conn] = pubsub_connections(raw, name)
        raw.client_kill_filter(_id=conn["id"])
        # Stored at once: before or after the listener is back, it must be seen.
        store(raw, f"{prefix}celery-task-meta-{tid}", doc(tid, result=3))
        got = await asyncio.wait_for(waiter, WAIT)
        assert got is not None and got["result"] == 3
    finally:
        await backend.close()


# -- the sync API (AsyncResult.get from the calling thread) -------------------------------


def make_app(url: str, prefix: str, name: str) -> Celery:
    options = {"global_keyprefix": prefix, "client_name": name}
    return Celery(
        "rw", broker=url, backend=url, result_backend_transport_options=options,
        set_as_current=False,
    )  # fmt: skip


@pytest.fixture
def app(prefix: str) -> Iterator[Celery]:
    app = make_app(REDIS_URL, prefix, f"rw-{uuid.uuid4().hex[:8]}")
    yield app
    app.close()


def no_portal(app: Celery) -> list[Any]:
    """Make any hop to the portal fail the test; returns the list of attempted hops."""
    hops: list[Any] = []

    def refuse(coro: Any, timeout: float | None = None) -> Any:
        hops.append(coro)
        coro.close()
        raise AssertionError("the sync API hopped to the portal")

    app.run_sync = refuse  # type: ignore[method-assign]
    return hops


def later(seconds: float, action: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sync_get_waits_in_the_calling_thread(
    app: Celery, raw: redis.Redis[bytes], prefix: str
) -> None:
    hops = no_portal(app)
    ready, pending = str(uuid.uuid4()), str(uuid.uuid4())
    store(raw, f"{prefix}celery-task-meta-{ready}", doc(ready, result=1))
    assert app.AsyncResult(ready).get(timeout=WAIT) == 1
    later(0.1, lambda: store(raw, f"{prefix}celery-task-meta-{pending}", doc(pending, result=2)))
    assert app.AsyncResult(pending).get(timeout=WAIT) == 2
    failed = str(uuid.uuid4())
    exc = {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}
    store(raw, f"{prefix}celery-task-meta-{failed}", doc(failed, "FAILURE", exc))
    with pytest.raises(ValueError, match="boom"):
        app.AsyncResult(failed).get(timeout=WAIT)
    assert hops == []


def test_sync_result_stored_between_subscribe_and_read(
    raw: redis.Redis[bytes], prefix: str
) -> None:
    proxy = SplitProxy(raw)
    app = make_app(proxy.url(), prefix, "rw-split")
    hops = no_portal(app)
    key = f"{prefix}celery-task-meta-"
    try:
        for n in range(2):  # the first get opens the connection, the second finds it
            tid = str(uuid.uuid4())
            proxy.arm(functools.partial(store, raw, key + tid, doc(tid, result=n)))
            assert app.AsyncResult(tid).get(timeout=WAIT) == n
            assert proxy.split, "SUBSCRIBE and GET were not written together"
        assert hops == []
    finally:
        app.close()
        proxy.close()


def test_sync_timeout_returns_the_latest_state(
    app: Celery, raw: redis.Redis[bytes], prefix: str
) -> None:
    hops = no_portal(app)
    tid = str(uuid.uuid4())
    key = f"{prefix}celery-task-meta-{tid}"
    store(raw, key, doc(tid, "STARTED"))
    later(0.1, lambda: store(raw, key, doc(tid, "RETRY")))
    with pytest.raises(ResultTimeout, match="RETRY"):
        app.AsyncResult(tid).get(timeout=0.5)
    waiter = _blocking_waiter(app)
    assert waiter is not None
    latest = waiter.wait(tid, 0.2)
    assert latest is not None and latest["status"] == "RETRY"
    assert waiter.wait(str(uuid.uuid4()), 0.1) is None
    assert hops == []


def test_sync_get_from_many_threads_shares_one_connection(
    app: Celery, raw: redis.Redis[bytes], prefix: str
) -> None:
    """16 threads x 25 gets; results stored before, during and after each wait starts."""
    hops = no_portal(app)
    name = app.conf["result_backend_transport_options"]["client_name"]
    key = f"{prefix}celery-task-meta-"
    errors: list[BaseException] = []
    counts: list[int] = []

    def writer(tids: list[str]) -> None:
        for i, tid in enumerate(tids):
            time.sleep(0.001 * (i % 3))
            store(raw, key + tid, doc(tid, result=tid))

    def caller(n: int) -> None:
        try:
            for _ in range(25):
                tid = str(uuid.uuid4())
                if n % 2:
                    store(raw, key + tid, doc(tid, result=tid))
                else:
                    later(0.002 * (n % 5), functools.partial(writer, [tid]))
                assert app.AsyncResult(tid).get(timeout=WAIT) == tid
            counts.append(len(pubsub_connections(raw, name)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert hops == []
    assert counts and max(counts) <= 1  # zero once every subscription is gone
    assert eventually(lambda: not raw.pubsub_channels(f"{prefix}*"))


def test_sync_waiters_of_one_key_in_several_threads(
    app: Celery, raw: redis.Redis[bytes], prefix: str
) -> None:
    hops = no_portal(app)
    tid = str(uuid.uuid4())
    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(app.AsyncResult(tid).get(timeout=WAIT)))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    store(raw, f"{prefix}celery-task-meta-{tid}", doc(tid, result=9))
    for thread in threads:
        thread.join(WAIT)
    assert got == [9] * 5
    assert hops == []


def test_sync_read_side_passes_to_a_thread_still_waiting(
    app: Celery, raw: redis.Redis[bytes], prefix: str
) -> None:
    """The reading thread's result arrives with another waiter's: a third must still be
    read for, whichever of the others gets the turn to read next."""
    hops = no_portal(app)
    key = f"{prefix}celery-task-meta-"
    for _ in range(5):
        first, second, third = (str(uuid.uuid4()) for _ in range(3))
        got: dict[str, Any] = {}

        def get(tid: str, got: dict[str, Any] = got) -> None:
            got[tid] = app.AsyncResult(tid).get(timeout=5)

        threads = [threading.Thread(target=get, args=(tid,)) for tid in (first, second, third)]
        for thread in threads:  # the first one starts first: it becomes the reader
            thread.start()
            time.sleep(0.05)
        pipe = raw.pipeline(transaction=True)
        for tid in (first, second):
            pipe.set(key + tid, json.dumps(doc(tid, result=tid)), ex=60)
            pipe.publish(key + tid, json.dumps(doc(tid, result=tid)))
        pipe.execute()
        time.sleep(0.1)
        store(raw, key + third, doc(third, result=third))
        for thread in threads:
            thread.join(10)
        assert got == {tid: tid for tid in (first, second, third)}
    assert hops == []


def test_sync_get_survives_its_connection_being_killed(
    app: Celery, raw: redis.Redis[bytes], prefix: str
) -> None:
    hops = no_portal(app)
    name = app.conf["result_backend_transport_options"]["client_name"]
    tid = str(uuid.uuid4())
    key = f"{prefix}celery-task-meta-{tid}"

    def kill_then_store() -> None:
        assert eventually(lambda: len(pubsub_connections(raw, name)) == 1)
        [conn] = pubsub_connections(raw, name)
        raw.client_kill_filter(_id=conn["id"])
        store(raw, key, doc(tid, result=4))  # maybe while nobody is subscribed

    later(0.1, kill_then_store)
    assert app.AsyncResult(tid).get(timeout=WAIT) == 4
    assert hops == []


def test_sync_get_survives_a_server_restart(tmp_path: Path) -> None:
    """The calling-thread waiter hands over to the portal while Redis is down."""
    server = RedisServer(tmp_path).start()
    try:
        app = make_app(server.url, "", "rw-restart")
        writer: redis.Redis[bytes] = redis.Redis(port=server.port)
        tid = str(uuid.uuid4())
        got: list[Any] = []
        thread = threading.Thread(target=lambda: got.append(app.AsyncResult(tid).get(timeout=20)))
        thread.start()
        time.sleep(0.3)
        server.kill()
        time.sleep(0.5)
        server.start()
        store(writer, f"celery-task-meta-{tid}", doc(tid, result=8))
        thread.join(25)
        assert got == [8]
        app.close()
        writer.close()
    finally:
        server.kill()


# -- servers without RESP3 -----------------------------------------------------------------


async def test_without_resp3_both_apis_still_wait(tmp_path: Path) -> None:
    """Redis before 6 has no HELLO: the RESP2 listener and the portal take over."""
    server = RedisServer(tmp_path, "--rename-command", "HELLO", '""').start()
    writer: redis.Redis[bytes] = redis.Redis(port=server.port, protocol=2)
    backend = await make_backend(server.url, "")
    try:
        tid = str(uuid.uuid4())
        waiter = asyncio.create_task(backend.wait(tid, WAIT))
        await asyncio.sleep(0.2)
        assert backend._listener is not None and not backend._listener.resp3
        store(writer, f"celery-task-meta-{tid}", doc(tid, result=6))
        got = await asyncio.wait_for(waiter, WAIT)
        assert got is not None and got["result"] == 6

        app = make_app(server.url, "", "rw-resp2")
        sync_tid = str(uuid.uuid4())
        store(writer, f"celery-task-meta-{sync_tid}", doc(sync_tid, result=7))
        value = await asyncio.to_thread(app.AsyncResult(sync_tid).get, timeout=WAIT)
        assert value == 7
        await asyncio.to_thread(app.close)
    finally:
        await backend.close()
        writer.close()
        server.kill()
