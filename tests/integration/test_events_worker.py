"""A worker process's events on Redis, RabbitMQ and SQLite, read with celeriac's receiver.

One worker start-up per engine (a module-scoped fixture): it runs with ``-E`` and the
client sends with ``task_send_sent_event``, so the receiver sees the whole story of a
task (sent, received, started, succeeded or failed) and the worker's heartbeats, and the
cluster state built from those events says the worker is alive and the tasks finished.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.events import State
from tests import services
from tests.integration import events_app

pytestmark = pytest.mark.timeout(90)

PREFIX = services.key_prefix("events")
HOSTNAME = "evw@test"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("amqp", marks=pytest.mark.amqp),
        "sqlite",
    ],
)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A broker URL of each engine, isolated (key prefix, own vhost, fresh file)."""
    if request.param == "redis":
        client = services.redis_client()
        yield services.REDIS_URL
        services.delete_prefixed(client, PREFIX)
        client.close()
    elif request.param == "amqp":
        with services.amqp_vhost() as vhost:
            yield services.amqp_vhost_url(vhost)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('events') / 'broker.sqlite'}"


@pytest.fixture(scope="module")
def worker(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One worker with -E on ``broker``; its log file."""
    log = tmp_path_factory.mktemp("events-log") / "worker.log"
    env = {"CELERIAC_BROKER_URL": broker, "TEST_KEYPREFIX": PREFIX}
    with services.running_worker("tests.integration.events_app", log, env, hostname=HOSTNAME):
        yield log


@pytest.fixture(scope="module")
def client(broker: str) -> Iterator[Celery]:
    app = events_app.app
    app.conf.broker_url = broker
    app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
    yield app
    app.close()


def capture(app: Celery, until: Any, seconds: float = 30.0) -> tuple[list[dict[str, Any]], State]:
    """Events received until ``until(events)`` holds (or ``seconds`` pass), and their state."""
    state = State()
    seen: list[dict[str, Any]] = []
    receiver = app.events.Receiver(handlers={"*": state.event})
    deadline = time.monotonic() + seconds
    try:
        for event in receiver.itercapture(timeout=seconds):
            seen.append(event)
            if until(seen) or time.monotonic() > deadline:
                break
    except TimeoutError:
        pass
    return seen, state


def test_heartbeats_every_two_seconds(client: Celery, worker: Path) -> None:
    events, state = capture(
        client, lambda seen: sum(e["type"] == "worker-heartbeat" for e in seen) >= 2
    )
    beats = [e for e in events if e["type"] == "worker-heartbeat"]
    assert len(beats) >= 2, worker.read_text()
    assert {e["hostname"] for e in beats} == {HOSTNAME}
    assert beats[0]["freq"] == 2.0 and beats[0]["sw_ident"] == "py-celeriac"
    assert beats[1]["clock"] > beats[0]["clock"]
    assert [w.hostname for w in state.alive_workers()] == [HOSTNAME]


def test_task_events_tell_each_task_story(client: Celery, worker: Path) -> None:
    import threading  # noqa: PLC0415

    ids: list[str] = []

    def send() -> None:
        time.sleep(1.0)  # the receiver subscribes first
        ids.append(events_app.add.delay(2, 3).id)
        ids.append(events_app.fail.delay("boom").id)

    sender = threading.Thread(target=send)
    sender.start()

    def done(seen: list[dict[str, Any]]) -> bool:
        finished = {e.get("uuid") for e in seen if e["type"] in ("task-succeeded", "task-failed")}
        sent = {e.get("uuid") for e in seen if e["type"] == "task-sent"}
        return len(ids) == 2 and set(ids) <= finished & sent

    events, state = capture(client, done)
    sender.join()
    add_id, fail_id = ids
    story = [e["type"] for e in events if e.get("uuid") == add_id]
    # The client's task-sent travels on its own connection: it may come in any place.
    assert "task-sent" in story, worker.read_text()
    story.remove("task-sent")
    assert story == ["task-received", "task-started", "task-succeeded"], worker.read_text()
    succeeded = next(e for e in events if e["type"] == "task-succeeded")
    assert succeeded["result"] == "5" and succeeded["hostname"] == HOSTNAME
    failed = next(e for e in events if e["type"] == "task-failed")
    assert failed["uuid"] == fail_id and "ValueError" in failed["exception"]
    assert "boom" in failed["traceback"]
    assert state.tasks[add_id].state == "SUCCESS"
    assert state.tasks[add_id].name == "evt.add"
    assert state.tasks[fail_id].state == "FAILURE"
    assert state.tasks[add_id].worker is not None
    assert state.tasks[add_id].worker.hostname == HOSTNAME
