"""Poison messages on a real worker process: each is dead-lettered alone, with its cause.

Good and poison messages are all queued before the worker starts, so they come in the same
fetch batches. The worker must run every good task once, set every poison message aside in
the dead-letter store with the reason (and say it in its log line), keep consuming, and
shut down cleanly (exit 0). Run on SQLite, Redis and RabbitMQ.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from celeriac import Celery
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.ids import uuid4
from celeriac.transport.base import DeadLetter, Outgoing
from tests import services
from tests.integration import poison_app

ROOT = Path(__file__).resolve().parents[2]
GOOD = [f"good-{i}" for i in range(6)]
DEEP = 5000  # far beyond any recursion limit


@dataclass
class Broker:
    url: str
    prefix: str
    kind: str
    path: Path | None = None  # the SQLite file


@pytest.fixture(scope="module")
def amqp_vhost() -> Iterator[str]:
    with services.amqp_vhost() as vhost:
        yield vhost


@pytest.fixture(params=["sqlite", "redis", "amqp"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    prefix = services.key_prefix("poison")
    if request.param == "sqlite":
        path = tmp_path / "broker.sqlite"
        yield Broker(f"sqlite:///{path}", prefix, "sqlite", path)
    elif request.param == "redis":
        client = services.redis_client()
        try:
            yield Broker(services.REDIS_URL, prefix, "redis")
        finally:
            services.delete_prefixed(client, prefix)
            client.close()
    else:
        vhost = request.getfixturevalue("amqp_vhost")
        yield Broker(services.amqp_vhost_url(vhost), prefix.rstrip(":"), "amqp")


def _headers(**changes: Any) -> dict[str, Any]:
    """Celery's protocol 2 headers of a ``record`` task, with ``changes``."""
    task_id = uuid4()
    headers: dict[str, Any] = {
        "lang": "py", "task": poison_app.record.name, "id": task_id, "shadow": None,
        "eta": None, "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": "('poison',)", "kwargsrepr": "{}", "origin": "test", "ignore_result": False,
    }  # fmt: skip
    headers.update(changes)
    return headers


def _envelope(body: bytes = b'[["poison"], {}, {}]', **headers: Any) -> Envelope:
    return Envelope(body=body, headers=_headers(**headers))


def _bomb() -> bytes:
    """A zlib body inflating to 20 times task_message_max_size."""
    return zlib.compress(b"[" + b" " * (20 * poison_app.MAX_SIZE) + b"]", 9)


# Each poison message, and words its dead-letter reason must contain.
POISONS: list[tuple[Envelope, str]] = [
    (_envelope(retries="abc"), "header 'retries' must be a whole number, not str 'abc'"),
    (_envelope(retries={}), "header 'retries' must be a whole number, not dict"),
    (_envelope(timelimit=["a", "b"]), "timelimit[0] must be a number of seconds"),
    (_envelope(eta=5), "header 'eta' must be an ISO-8601 string"),
    (_envelope(stamps=[1]), "header 'stamps' must be a dict"),
    (_envelope(group_index="x"), "header 'group_index' must be a whole number"),
    (_envelope(b"[" * DEEP + b"]" * DEEP), "nested too deeply"),
    (_envelope(_bomb(), compression="application/x-gzip"), "inflates to more than"),
    (_envelope(b"x" * (poison_app.MAX_SIZE + 1)), "more than task_message_max_size"),
    (_envelope(b"not zlib", compression="application/x-gzip"), "corrupt application/x-gzip"),
]


# Decodes, but its arguments are nested too deeply to pickle for the prefork pool (and are
# no label for the task): it must fail once (FAILURE, with the reason in the log), not be
# put back to fail again.
UNPICKLABLE = _envelope(b"[[" + b"[" * 600 + b"]" * 600 + b"], {}, {}]")


def _client(broker: Broker) -> Celery:
    client = Celery("poison-client", broker=broker.url)
    poison_app.configure(client, broker.prefix)
    return client


async def _publish(client: Celery) -> None:
    """Good tasks interleaved with the poison messages, all in the default queue."""
    goods = iter(GOOD)
    for envelope, _ in POISONS:
        label = next(goods, None)
        if label is not None:
            await client.apublish([client.build_request(poison_app.record.name, (label,), {}, {})])
        await _publish_one(client, envelope)
    await _publish_one(client, UNPICKLABLE)
    for label in goods:
        await client.apublish([client.build_request(poison_app.record.name, (label,), {}, {})])


async def _publish_one(client: Celery, envelope: Envelope) -> None:
    transport = await client.aget_transport()
    await transport.publish([Outgoing(envelope, "", "celery")])


def _raw_poisons(broker: Broker, client: Celery) -> list[str]:
    """Poison the broker's own storage can hold but no publisher writes; their reasons."""
    deep = b"[" * DEEP + b"]" * DEEP
    if broker.kind == "redis":
        client = services.redis_client()
        try:
            client.lpush(f"{broker.prefix}celery", b"\xff garbage \x00")
            client.lpush(f"{broker.prefix}celery", b'{"body": "", "headers": ' + deep + b"}")
        finally:
            client.close()
        return ["not JSON", "envelope JSON nested too deeply"]
    if broker.kind == "sqlite":
        assert broker.path is not None
        client.run_sync(_publish_one(client, _envelope()))  # the row made poison below
        with sqlite3.connect(broker.path) as db:  # headers only the SQL side could write
            db.execute(
                "UPDATE celeriac_messages SET headers = ? WHERE id = (SELECT MAX(id)"
                " FROM celeriac_messages)",
                (deep.decode(),),
            )
        return ["stored headers or properties unreadable: nested too deeply"]
    return []


def _start_worker(broker: Broker, record: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CELERIAC_BROKER_URL": broker.url,
        "TEST_KEYPREFIX": broker.prefix,
        "POISON_RECORD": str(record),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "celeriac", "-A", "tests.integration.poison_app", "worker"]
    command += ["-l", "info", "-c", "2", "--prefetch-multiplier", "20"]
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def _dead_letters(client: Celery) -> list[DeadLetter]:
    transport = await client.aget_transport()
    return await transport.list_dead(100)


def _wait_for(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_poison_messages_are_dead_lettered_alone_and_the_batch_runs(
    broker: Broker, tmp_path: Path
) -> None:
    record, log = tmp_path / "record.txt", tmp_path / "worker.log"
    client = _client(broker)
    try:
        client.run_sync(_publish(client))
        expected = [reason for _, reason in POISONS] + _raw_poisons(broker, client)
        worker = _start_worker(broker, record, log)
        try:
            _wait_for(
                lambda: record.exists() and len(record.read_text().split()) >= len(GOOD),
                60, "the good tasks", log,
            )  # fmt: skip
            dead: list[DeadLetter] = []

            def all_dead() -> bool:
                dead[:] = client.run_sync(_dead_letters(client))
                return len(dead) >= len(expected)

            _wait_for(all_dead, 30, "the dead letters", log)
            time.sleep(1.0)  # time enough to loop on a message, were one put back
            assert worker.poll() is None, "the worker stopped"
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(40)
            except subprocess.TimeoutExpired:
                worker.kill()  # it hung at shutdown: leave no process behind
                worker.wait(10)
                raise
        text = log.read_text(errors="replace")
        assert code == 0, text[-4000:]
        assert sorted(record.read_text().split()) == sorted(GOOD)  # each ran once
        assert len(dead) == len(expected), [d.reason for d in dead]
        reasons = [d.reason for d in dead]
        for words in expected:
            assert sum(words in reason for reason in reasons) >= 1, (words, reasons)
        rejected = [line for line in text.splitlines() if "dead-letter store" in line]
        assert len(rejected) == len(expected), rejected  # once each: no loop
        for words in expected:  # the cause is in the log line, not only in a header
            assert any(words in line for line in rejected), (words, rejected)
        # The default shape runs it in-process, where its argument is not a label (TypeError);
        # prefork cannot pickle it for a child. Either way it fails once.
        cannot_run = [
            line
            for line in text.splitlines()
            if "cannot run: cannot pickle" in line or "raised unexpected: TypeError" in line
        ]
        assert len(cannot_run) == 1, cannot_run
        # No internal error: the one traceback allowed is that task's own failure.
        assert text.count("Traceback") == ("TypeError" in cannot_run[0]), text[-4000:]
        assert "requeueing" not in text
        password = urlsplit(broker.url).password
        if password:  # the banner shows the broker URL: masked
            assert f":{password}@" not in text and ":**@" in text
    finally:
        client.close()
