"""Redis connection handling: URL forms, and surviving a server that dies and comes back.

These tests start their own throwaway ``redis-server`` processes on free ports (never the
shared server), so they can kill and restart them.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac.engines.redis.broker import RedisTransport
from celeriac.engines.redis.connection import parse_redis_url
from celeriac.engines.redis.results import RedisBackend
from celeriac.exceptions import ImproperlyConfigured, OperationalError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import JSON
from celeriac.transport.base import Delivery, Outgoing
from tests.services import unavailable

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway redis-server (AOF with fsync always, so a kill loses nothing)."""

    def __init__(self, workdir: Path, *extra: str, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            unavailable("redis-server is not installed")
        self.port = port if port is not None else free_port()
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, ready: Any = None) -> RedisServer:
        args = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        args += ["--dir", str(self.workdir), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (ready or self._pings)():
                return self
            time.sleep(0.02)
        raise RuntimeError("throwaway redis-server did not start")

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path).start()
    yield srv
    srv.kill()


def env(body: bytes) -> Envelope:
    return Envelope(body=body, headers={"id": uuid.uuid4().hex})


FAST_RETRY = {"max_retries": 3, "retry_backoff_max": 0.2, "socket_connect_timeout": 1}


# --- URL parsing (no I/O) ---------------------------------------------------------------


def test_url_forms() -> None:
    s = parse_redis_url("redis://user:p%40ss@h:6380/3")
    assert (s.db, s.connection["host"], s.connection["port"]) == (3, "h", 6380)
    assert (s.connection["username"], s.connection["password"]) == ("user", "p@ss")
    assert not s.tls
    s = parse_redis_url("rediss://h/1?ssl_cert_reqs=CERT_NONE")
    assert s.tls and s.connection["ssl_cert_reqs"] == "none" and s.db == 1
    s = parse_redis_url("rediss://h", {"ssl": {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca"}})
    assert s.connection["ssl_cert_reqs"] == "required" and s.connection["ssl_ca_certs"] == "/ca"
    for url in ("redis+socket:///tmp/r.sock?db=2", "unix:///tmp/r.sock?db=2"):
        s = parse_redis_url(url)
        assert (s.connection["path"], s.db) == ("/tmp/r.sock", 2)
    s = parse_redis_url(
        "sentinel://:pw@s1:26379/2;sentinel://s2:26380",
        {"master_name": "mymaster", "global_keyprefix": "p:", "max_connections": 7},
    )
    assert s.sentinels == (("s1", 26379), ("s2", 26380))
    assert (s.master_name, s.db, s.key_prefix, s.max_connections) == ("mymaster", 2, "p:", 7)
    assert s.connection["password"] == "pw"
    with pytest.raises(ImproperlyConfigured):
        parse_redis_url("sentinel://s1:26379")  # no master_name
    with pytest.raises(ImproperlyConfigured):
        parse_redis_url("amqp://h")
    with pytest.raises(ImproperlyConfigured):
        parse_redis_url("rediss://h", {"ssl_cert_reqs": "sometimes"})


# --- connection loss --------------------------------------------------------------------


async def test_consumer_resumes_after_server_restart_and_nothing_is_lost(
    server: RedisServer,
) -> None:
    consumer = RedisTransport(server.url, options=FAST_RETRY)
    producer = RedisTransport(server.url, options={**FAST_RETRY, "max_retries": 40})
    await consumer.connect()
    await producer.connect()
    q = "resume"
    received: list[bytes] = []
    stop = asyncio.Event()

    async def ack(batch: list[Delivery]) -> None:
        while True:  # an ack that fails during the outage is retried, as a worker would
            try:
                return await consumer.ack(batch)
            except ConnectionError:
                await asyncio.sleep(0.1)

    async def consume() -> None:
        while not stop.is_set():
            batch = await consumer.fetch([q], limit=5, timeout=0.3)
            received.extend(d.envelope.body for d in batch)
            await asyncio.sleep(0.05)  # slow worker: messages are in flight during the kill
            await ack(batch)

    task = asyncio.create_task(consume())
    try:
        await producer.publish([Outgoing(env(b"before-%d" % i), routing_key=q) for i in range(20)])
        await asyncio.sleep(0.1)
        server.kill()
        late = asyncio.create_task(  # published while the server is down: retried until it is up
            producer.publish([Outgoing(env(b"during"), routing_key=q)])
        )
        await asyncio.sleep(1.0)
        server.start()
        await late
        await producer.publish([Outgoing(env(b"after"), routing_key=q)])
        expected = {b"before-%d" % i for i in range(20)} | {b"during", b"after"}
        deadline = time.monotonic() + 20
        while not expected <= set(received) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert expected <= set(received)
        assert await producer.queue_sizes([q]) == {q: 0}
    finally:
        stop.set()
        await task
        await consumer.close()
        await producer.close()


async def test_publish_raises_after_retries_when_down(server: RedisServer) -> None:
    transport = RedisTransport(server.url, options={**FAST_RETRY, "max_retries": 2})
    await transport.connect()
    server.kill()
    with pytest.raises(OperationalError, match=r"publish at redis://.* failed after 3 attempts"):
        await transport.publish([Outgoing(env(b"x"), routing_key="q")])
    started = time.monotonic()
    assert await transport.fetch(["q"], limit=1, timeout=0.5) == []  # logs, never raises
    assert time.monotonic() - started < 5
    await transport.close()


async def test_result_waiter_survives_server_restart(server: RedisServer) -> None:
    backend = RedisBackend(server.url, serializer=JSON, expires=60, options=FAST_RETRY)
    writer = RedisBackend(server.url, serializer=JSON, expires=60, options={"max_retries": 40})
    await backend.connect()
    await writer.connect()
    tid = str(uuid.uuid4())
    waiter = asyncio.create_task(backend.wait(tid, 30))
    await asyncio.sleep(0.2)
    server.kill()
    await asyncio.sleep(0.5)
    server.start()
    # Written right after the restart: the listener may not be back yet; the recheck finds it.
    await writer.store([(tid, {"status": "SUCCESS", "result": 1, "task_id": tid})])
    doc = await asyncio.wait_for(waiter, 20)
    assert doc is not None and doc["result"] == 1
    await backend.close()
    await writer.close()


# --- URL variants against real servers ---------------------------------------------------


async def _roundtrip(url: str, options: dict[str, Any] | None = None) -> None:
    transport = RedisTransport(url, options=options)
    backend = RedisBackend(url, serializer=JSON, expires=60, options=options)
    await transport.connect()
    await backend.connect()
    try:
        await transport.publish([Outgoing(env(b"hi"), routing_key="url-q")])
        [d] = await transport.fetch(["url-q"], limit=1, timeout=5)
        assert d.envelope.body == b"hi"
        await transport.ack([d])
        await backend.store([("t1", {"status": "SUCCESS", "result": 2, "task_id": "t1"})])
        doc = await backend.wait("t1", 5)
        assert doc is not None and doc["result"] == 2
    finally:
        await transport.close()
        await backend.close()


async def test_unix_socket_urls(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    srv = RedisServer(tmp_path, "--unixsocket", str(path), "--unixsocketperm", "700").start()
    try:
        await _roundtrip(f"redis+socket://{path}?db=3")
        await _roundtrip(f"unix://{path}?db=4")
    finally:
        srv.kill()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_rediss_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    srv = RedisServer(
        tmp_path, "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-auth-clients", "no", port=0,
    )  # fmt: skip

    def ready() -> bool:
        try:
            context = ssl.create_default_context(cafile=str(cert))
            with socket.create_connection(("127.0.0.1", tls_port), timeout=0.5) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    srv.start(ready)
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0"
        await _roundtrip(url, {"ssl_cert_reqs": "required", "ssl_ca_certs": str(cert)})
        await _roundtrip(url + "?ssl_cert_reqs=CERT_NONE")
    finally:
        srv.kill()


async def test_sentinel(tmp_path: Path) -> None:
    master = RedisServer(tmp_path).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
    )
    args = [str(REDIS_SERVER), str(conf), "--sentinel"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", sentinel_port)) == 0:
                    break
            time.sleep(0.05)
        url = f"sentinel://127.0.0.1:{sentinel_port};sentinel://127.0.0.1:{free_port()}"
        await _roundtrip(url, {"master_name": "mymaster"})
    finally:
        proc.kill()
        proc.wait()
        master.kill()


async def test_outage_longer_than_lease_does_not_steal_live_work(server: RedisServer) -> None:
    """After Redis comes back, live consumers get time to heartbeat before any sweep."""
    options = {**FAST_RETRY, "max_retries": 20}
    # The holder heartbeats slowly (0.6 s); the other one would sweep 0.2 s after Redis is
    # back, long before the holder's next heartbeat, if it did not wait a lease_timeout.
    holder = RedisTransport(
        server.url, options={**options, "lease_timeout": 1.0, "heartbeat_interval": 0.6}
    )
    other = RedisTransport(
        server.url, options={**options, "lease_timeout": 2.0, "heartbeat_interval": 0.2}
    )
    await holder.connect()
    await other.connect()
    try:
        await holder.publish([Outgoing(env(b"long task"), routing_key="outage")])
        [held] = await holder.fetch(["outage"], limit=1, timeout=5)
        assert await other.fetch(["outage"], limit=1, timeout=0.2) == []  # other sweeps too
        server.kill()
        await asyncio.sleep(2.5)  # both liveness keys expire meanwhile (AOF keeps the data)
        server.start()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert await other.fetch(["outage"], limit=1, timeout=0.5) == []
        await holder.ack([held])
        assert await other.queue_sizes(["outage"]) == {"outage": 0}
    finally:
        await holder.close()
        await other.close()
