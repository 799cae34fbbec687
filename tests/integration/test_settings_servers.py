"""Settings that take effect against the real servers.

* ``broker_use_ssl`` (Redis and RabbitMQ) and ``redis_backend_use_ssl``: through a TLS proxy
  in front of the test servers (certificate made here with ``openssl``); the same URL without
  the setting fails, so the connection did use TLS.
* ``task_default_delivery_mode`` on RabbitMQ and ``result_persistent`` on ``rpc://``: the
  delivery mode of the messages as the broker holds them.
* ``result_compression`` on Redis, read both ways by the real Celery.
* ``redis_retry_on_timeout``: against a server that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
import redis

from celeriac import Celery
from celeriac.protocol.result_codec import COMPRESSED_MARKER
from celeriac.protocol.results import make_meta
from celeriac.transport import Outgoing, QueueSpec
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import (
    amqp_address,
    delete_prefixed,
    key_prefix,
    redis_address,
    redis_client,
    redis_url_at,
)

amqp_vhost = amqp_fixtures.amqp_vhost
amqp_url = amqp_fixtures.amqp_url


class TLSProxy:
    """Accepts TLS connections on a local port and relays them, decrypted, to ``target``."""

    def __init__(self, target: tuple[str, int], cert: Path, key: Path) -> None:
        self.target = target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                plain, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(plain,), daemon=True).start()

    def _serve(self, plain: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(plain, server_side=True)
        except (ssl.SSLError, OSError):
            plain.close()
            return
        self.handshakes += 1
        upstream = socket.create_connection(self.target)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis_client()
    prefix = key_prefix("settings")
    yield prefix
    delete_prefixed(client, prefix)
    client.close()


@pytest.fixture
def redis_tls(certificate: tuple[Path, Path]) -> Iterator[TLSProxy]:
    redis_client().close()  # skip (or fail under CI) without the server
    proxy = TLSProxy(redis_address(), *certificate)
    yield proxy
    proxy.close()


async def _round_trip(app: Celery, queue: str) -> None:
    """Declare ``queue``, publish a task message to it, fetch and ack it."""
    transport = await app.aget_transport()
    await transport.declare([QueueSpec(queue)])
    envelope = app._outgoing([app.build_request("t.x", (), {}, {"queue": queue})])[0].envelope
    await transport.publish([Outgoing(envelope, "", queue)])
    (delivery,) = await transport.fetch([queue], limit=1, timeout=5)
    await transport.ack([delivery])


async def test_broker_and_backend_tls_on_redis(
    redis_tls: TLSProxy, certificate: tuple[Path, Path], redis_prefix: str
) -> None:
    url = redis_url_at("127.0.0.1", redis_tls.port)
    tls = {"ssl_cert_reqs": "required", "ssl_ca_certs": str(certificate[0])}
    options = {"global_keyprefix": redis_prefix}
    app = Celery(
        "tls", broker=url, backend=url, broker_use_ssl=tls, redis_backend_use_ssl=tls,
        broker_transport_options=options, result_backend_transport_options=options,
        set_as_current=False,
    )  # fmt: skip
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    try:
        await _round_trip(app, queue)
        backend = await app.aget_backend()
        tid = str(uuid.uuid4())
        await backend.store([(tid, make_meta(tid, "SUCCESS", "over tls"))])
        doc = await backend.wait(tid, 5)
        assert doc is not None and doc["result"] == "over tls"
    finally:
        await app.aclose()
    assert redis_tls.handshakes >= 2
    plain = Celery("plain", broker=url, broker_transport_options={**options, "max_retries": 0})
    with pytest.raises((ConnectionError, OSError)):
        await (await plain.aget_transport()).declare([QueueSpec(queue)])
    await plain.aclose()


@pytest.fixture
def amqp_tls(certificate: tuple[Path, Path], amqp_url: str) -> Iterator[TLSProxy]:
    proxy = TLSProxy(amqp_address(), *certificate)
    yield proxy
    proxy.close()


def _via(url: str, port: int) -> str:
    """``url`` (an amqp:// URL with credentials and vhost) pointed at 127.0.0.1:``port``."""
    scheme, rest = url.split("://", 1)
    credentials, _, tail = rest.partition("@")
    vhost = tail.partition("/")[2]
    return f"{scheme}://{credentials}@127.0.0.1:{port}/{vhost}"


async def test_broker_tls_on_rabbitmq(
    amqp_tls: TLSProxy, certificate: tuple[Path, Path], amqp_url: str
) -> None:
    url = _via(amqp_url, amqp_tls.port)
    tls = {"ca_certs": str(certificate[0]), "cert_reqs": ssl.CERT_REQUIRED}
    app = Celery("tls", broker=url, broker_use_ssl=tls, set_as_current=False)
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    try:
        await _round_trip(app, queue)
    finally:
        await app.aclose()
    assert amqp_tls.handshakes >= 1
    plain = Celery("plain", broker=url, broker_transport_options={"max_retries": 0})
    with pytest.raises(Exception):  # noqa: B017 - whatever the AMQP client makes of TLS bytes
        await plain.aget_transport()
    await plain.aclose()


async def _raw_get(url: str, queue: str) -> Any:
    """The message at the head of ``queue`` as the broker holds it (basic.get)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for _ in range(50):
            message = await channel.basic_get(queue, no_ack=True)
            if message.body:
                return message
            await asyncio.sleep(0.1)
        raise AssertionError(f"nothing arrived in {queue}")
    finally:
        await connection.close()


@pytest.mark.parametrize(("setting", "expected"), [("transient", 1), ("persistent", 2)])
async def test_task_default_delivery_mode_on_rabbitmq(
    amqp_url: str, setting: str, expected: int
) -> None:
    app = Celery(
        "dm", broker=amqp_url, task_default_delivery_mode=setting, task_ignore_result=True,
        set_as_current=False,
    )  # fmt: skip
    queue = f"dm-{uuid.uuid4().hex[:8]}"
    try:
        await app.asend_task("t.anything", queue=queue)
    finally:
        await app.aclose()
    message = await _raw_get(amqp_url, queue)
    assert message.header.properties.delivery_mode == expected


@pytest.mark.parametrize(("persistent", "expected"), [(True, 2), (None, 1)])
async def test_result_persistent_on_rpc(
    amqp_url: str, persistent: bool | None, expected: int
) -> None:
    app = Celery(
        "rpc", broker=amqp_url, backend="rpc://", result_persistent=persistent,
        set_as_current=False,
    )  # fmt: skip
    reply_queue = f"reply-{uuid.uuid4().hex[:8]}"
    try:
        transport = await app.aget_transport()
        await transport.declare([QueueSpec(reply_queue)])
        backend = await app.aget_backend()
        tid = str(uuid.uuid4())
        await backend.store_for(reply_queue, [(tid, make_meta(tid, "SUCCESS", 1))])  # type: ignore[attr-defined]
    finally:
        await app.aclose()
    message = await _raw_get(amqp_url, reply_queue)
    assert message.header.properties.delivery_mode == expected


async def test_result_compression_read_by_celery_and_back(redis_prefix: str) -> None:
    celery = pytest.importorskip("celery")
    client = redis_client()
    url = redis_url_at(*redis_address())
    options = {"global_keyprefix": redis_prefix}
    app = Celery(
        "zip", broker="memory://zip", backend=url, result_compression="gzip",
        result_backend_transport_options=options, set_as_current=False,
    )  # fmt: skip
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        backend = await app.aget_backend()
        await backend.store([(mine, make_meta(mine, "SUCCESS", {"text": "z" * 500}))])
        raw = client.get(f"{redis_prefix}celery-task-meta-{mine}")
        assert raw is not None and raw.startswith(COMPRESSED_MARKER) and len(raw) < 300
        peer = celery.Celery(
            "peer", backend=url, result_backend_transport_options=options,
            result_compression="bzip2", set_as_current=False,
        )  # fmt: skip
        assert peer.AsyncResult(mine).get(timeout=5) == {"text": "z" * 500}
        peer.backend.store_result(theirs, {"from": "celery"}, "SUCCESS")
        (doc,) = await backend.get([theirs])
        assert doc is not None and doc["result"] == {"from": "celery"}
    finally:
        await app.aclose()
        client.close()


class Silent:
    """A TCP server that accepts connections and never answers (a hung Redis)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


@pytest.mark.parametrize(("retry", "attempts"), [(False, 1), (True, 3)])
async def test_redis_retry_on_timeout(silent: Silent, retry: bool, attempts: int) -> None:
    app = Celery(
        "hung", broker="memory://hung", backend=f"redis://127.0.0.1:{silent.port}/0",
        redis_socket_timeout=0.3, redis_retry_on_timeout=retry,
        result_backend_transport_options={"max_retries": 2, "retry_backoff_max": 0.1},
        set_as_current=False,
    )  # fmt: skip
    try:
        with pytest.raises((redis.exceptions.TimeoutError, ConnectionError)):
            await app.aget_backend()
    finally:
        await app.aclose()
    assert len(silent.accepted) == attempts
