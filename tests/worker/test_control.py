"""Remote control of a real worker in the test's loop, on memory, SQLite and Redis."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from celeriac import Celery, signals, states
from celeriac.control import wire
from celeriac.control.mailbox import Mailbox
from celeriac.protocol.envelope import Envelope
from celeriac.transport import Outgoing
from celeriac.worker.worker import Worker
from tests.worker.conftest import StartWorker

pytestmark = pytest.mark.timeout(60)

NAME = "ctl@test"
TO = [NAME]  # one addressee: a call returns as soon as it answers


async def _online(app: Celery, start_worker: StartWorker, **options: object) -> Worker:
    """Start a worker named NAME and wait until its mailbox answers (it opens after the
    pools, so a request sent before would reach nobody)."""
    worker = await start_worker(hostname=NAME, **options)
    deadline = time.monotonic() + 40  # SQLite under a loaded machine is slow to start
    while not await app.control.aping(TO, timeout=0.5):
        assert time.monotonic() < deadline, "the worker's mailbox never answered"
    return worker


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_ping_stats_registered_and_conf(app: Celery, start_worker: StartWorker) -> None:
    worker = await _online(app, start_worker)
    assert await app.control.aping(TO, timeout=2) == [{NAME: {"ok": "pong"}}]
    inspect = app.control.inspect(destination=TO, timeout=2)
    await app.send_task("tests.worker.apps.add", (1, 2)).aget(timeout=10)
    stats = (await inspect.astats())[NAME]
    assert stats["total"] == {"tests.worker.apps.add": 1}
    assert stats["pool"]["max-concurrency"] == worker.concurrency
    window = stats["prefetch_window"]  # adaptive: its size depends on when it is asked
    assert window["adaptive"] is True
    assert window["fixed"] == worker.concurrency * worker.prefetch_multiplier
    assert window["fixed"] <= window["current"] <= window["ceiling"]
    assert stats["prefetch_count"] >= window["current"]  # plus the async tasks' room
    assert {"pid", "clock", "uptime", "broker", "rusage"} <= set(stats)
    registered = (await inspect.aregistered())[NAME]
    assert "tests.worker.apps.add" in registered
    assert "tests.worker.apps.limited [rate_limit=5/s]" in registered
    assert (await inspect.aconf())[NAME]["broker_url"]
    queues = (await inspect.aactive_queues())[NAME]
    assert [q["name"] for q in queues] == ["celery"]


async def test_active_query_and_revoke_of_a_running_task(
    app: Celery, start_worker: StartWorker
) -> None:
    await _online(app, start_worker)
    inspect = app.control.inspect(destination=TO, timeout=2)
    result = app.send_task("tests.worker.apps.sleep", (1.0,))
    active: list[dict[str, object]] = []

    async def running() -> None:
        nonlocal active
        while not (active := ((await inspect.aactive()) or {}).get(NAME) or []):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(running(), 10)
    assert active[0]["id"] == result.id
    assert active[0]["args"] == [1.0]
    assert active[0]["time_start"]
    states_by_id = (await inspect.aquery_task(result.id))[NAME]
    assert states_by_id[result.id][0] == "active"
    # The threads pool cannot kill a task: the reply says so; the task is revoked.
    reply = await app.control.aterminate(result.id, reply=True, timeout=2, destination=TO)
    assert "cannot kill" in reply[0][NAME]["error"]
    assert result.id in (await inspect.arevoked())[NAME]
    await result.aget(timeout=10, propagate=False)


async def test_revoke_of_a_prefetched_task_keeps_it_from_starting(
    app: Celery, start_worker: StartWorker
) -> None:
    # One slot, busy: the second task waits in the worker (prefetched) when it is revoked.
    worker = await _online(app, start_worker, concurrency=1)
    assert worker.handler is not None
    busy = app.send_task("tests.worker.apps.sleep", (1.0,))
    waiting = app.send_task("tests.worker.apps.add", (1, 1))
    handler = worker.handler
    await _until(lambda: busy.id in handler.flights and waiting.id in handler.flights)
    assert worker.sync_pool is not None and worker.sync_pool.capacity == 1  # one waits
    await app.control.arevoke(waiting.id, reply=True, timeout=2, destination=TO)
    await waiting.aget(timeout=10, propagate=False)
    meta = await app.AsyncResult(waiting.id).ameta()
    assert meta["status"] == states.REVOKED
    assert meta["result"]["exc_message"] == ["revoked"]
    assert await busy.aget(timeout=10) == 1.0


async def test_terminate_of_a_finished_task_says_it_is_not_running(
    app: Celery, start_worker: StartWorker
) -> None:
    await _online(app, start_worker)
    result = app.send_task("tests.worker.apps.add", (2, 2))
    assert await result.aget(timeout=10) == 4
    reply = await app.control.arevoke(
        result.id, terminate=True, reply=True, timeout=2, destination=TO
    )
    assert reply == [{NAME: {"ok": "terminate: tasks unknown (not running on this worker)"}}]
    assert result.state == states.SUCCESS


async def test_rate_and_time_limits(app: Celery, start_worker: StartWorker) -> None:
    await _online(app, start_worker)
    control = app.control
    reply = await control.arate_limit(
        "tests.worker.apps.add", "100/s", reply=True, timeout=2, destination=TO
    )
    assert reply == [{NAME: {"ok": "new rate limit set successfully"}}]
    registered = (await control.inspect(destination=TO, timeout=2).aregistered())[NAME]
    assert "tests.worker.apps.add [rate_limit=100/s]" in registered
    assert await control.arate_limit("nope", "1/s", reply=True, timeout=2, destination=TO) == [
        {NAME: {"error": "unknown task"}}
    ]
    bad = await control.arate_limit(
        "tests.worker.apps.add", "x/y", reply=True, timeout=2, destination=TO
    )
    assert bad[0][NAME]["error"].startswith("Invalid rate limit string")
    reply = await control.atime_limit(
        "tests.worker.apps.add", 5, 10, reply=True, timeout=2, destination=TO
    )
    assert reply == [{NAME: {"ok": "time limits set successfully"}}]
    assert app.tasks["tests.worker.apps.add"].time_limit == 10
    await control.arate_limit("tests.worker.apps.add", 0, reply=True, timeout=2, destination=TO)
    app.tasks["tests.worker.apps.add"].time_limit = None
    app.tasks["tests.worker.apps.add"].soft_time_limit = None


async def test_add_and_cancel_consumer(app: Celery, start_worker: StartWorker) -> None:
    worker = await _online(app, start_worker)
    reply = await app.control.aadd_consumer("extra", reply=True, timeout=2, destination=TO)
    assert reply == [{NAME: {"ok": "add consumer extra"}}]
    assert await app.send_task("tests.worker.apps.add", (3, 4), queue="extra").aget(timeout=10) == 7
    names = [
        q["name"]
        for q in (await app.control.inspect(destination=TO, timeout=2).aactive_queues())[NAME]
    ]
    assert names == ["celery", "extra"]
    reply = await app.control.acancel_consumer("extra", reply=True, timeout=2, destination=TO)
    assert reply == [{NAME: {"ok": "no longer consuming from extra"}}]
    assert [q.name for q in worker.queues] == ["celery"]


async def test_commands_celeriac_does_not_support_say_so(
    app: Celery, start_worker: StartWorker
) -> None:
    await _online(app, start_worker)
    control = app.control
    assert await control.aautoscale(4, 2, reply=True, timeout=2, destination=TO) == [
        {NAME: {"error": "ValueError('Autoscale not enabled')"}}
    ]
    grow = await control.apool_grow(1, reply=True, timeout=2, destination=TO)
    assert grow == [{NAME: {"error": "the threads pool has a fixed size (-c)"}}]
    assert await control.aheartbeat(reply=True, timeout=2, destination=TO) == [{NAME: None}]


async def test_autoscale_sets_the_bounds_of_an_autoscaling_worker(
    app: Celery, start_worker: StartWorker
) -> None:
    worker = await _online(app, start_worker, pool="prefork", autoscale=(3, 1))
    control = app.control
    reply = await control.aautoscale(4, 2, reply=True, timeout=5, destination=TO)
    assert reply == [{NAME: {"ok": "autoscale now max=4 min=2"}}]
    assert worker.autoscaler is not None
    assert (worker.autoscaler.maximum, worker.autoscaler.minimum) == (4, 2)
    assert worker.concurrency == 4  # the prefetch window is sized for the new max
    pool = worker.sync_pool
    await _until(lambda: getattr(pool, "capacity", 0) == 2)  # grown to the new min
    refused = await control.aautoscale(1, 3, reply=True, timeout=5, destination=TO)
    assert refused == [{NAME: {"error": "autoscale needs 1 <= min <= max, not max=1 min=3"}}]
    assert (worker.autoscaler.maximum, worker.autoscaler.minimum) == (4, 2)


async def test_requests_collected_at_once_each_get_their_replies(
    app: Celery, start_worker: StartWorker
) -> None:
    """Concurrent requests share the client's reply queue: a reply fetched by one
    collector for another's ticket reaches that other, not nobody."""
    await _online(app, start_worker)
    inspect = app.control.inspect(timeout=1.5)  # no destination: each waits its timeout
    stats, queues, registered, ping = await asyncio.gather(
        inspect.astats(), inspect.aactive_queues(), inspect.aregistered(), inspect.aping()
    )
    assert stats is not None and NAME in stats, stats
    assert queues is not None and [q["name"] for q in queues[NAME]] == ["celery"]
    assert registered is not None  # (an earlier test may have given add a rate limit)
    assert any(line.startswith("tests.worker.apps.add") for line in registered[NAME])
    assert ping == {NAME: {"ok": "pong"}}
    assert app.control._unclaimed == {}  # nothing kept once the requests are done


async def test_destination_and_silent_hosts(app: Celery, start_worker: StartWorker) -> None:
    await _online(app, start_worker)
    assert await app.control.aping(destination=["ghost@nowhere"], timeout=0.5) == []
    replies = await app.control.aping(destination=[NAME, "ghost@nowhere"], timeout=1)
    assert replies == [{NAME: {"ok": "pong"}}]
    assert await app.control.inspect(destination=NAME, timeout=2).aping() == {"ok": "pong"}
    glob = await app.control.abroadcast(
        "ping", reply=True, timeout=1, pattern="ctl@*", matcher="glob"
    )
    assert glob == [{NAME: {"ok": "pong"}}]


async def test_bad_messages_are_logged_once_and_the_worker_keeps_answering(
    app: Celery, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    await _online(app, start_worker)
    transport = await app.aget_transport()
    names = wire.MailboxNames()
    junk = [
        Envelope(body=b"{not json", content_type="application/json"),
        Envelope(body=b"{not json", content_type="application/json"),
        Envelope(body=b'{"arguments": {}}', content_type="application/json"),
    ]
    with caplog.at_level(logging.DEBUG, logger="celeriac.worker.control"):
        await transport.publish(
            [Outgoing(e, exchange=names.exchange, routing_key="") for e in junk]
        )
        unknown = await app.control.abroadcast(
            "no_such_command", destination=TO, reply=True, timeout=2
        )
        await app.control.abroadcast("no_such_command", destination=TO, reply=True, timeout=2)
        assert await app.control.aping(TO, timeout=2) == [{NAME: {"ok": "pong"}}]
    assert unknown == [{NAME: {"error": "unknown control command 'no_such_command'"}}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("not JSON" in w for w in warnings) == 1
    assert sum("no 'method'" in w for w in warnings) == 1
    assert sum("no_such_command" in w for w in warnings) == 1


async def test_shutdown_stops_the_worker(app: Celery, start_worker: StartWorker) -> None:
    worker = await _online(app, start_worker)
    assert await app.control.ashutdown(reply=True, timeout=0.5) == []
    await _until(lambda: worker._stopping.is_set())


async def test_remote_control_can_be_switched_off(app: Celery, start_worker: StartWorker) -> None:
    app.conf.worker_enable_remote_control = False
    try:
        await start_worker(hostname=NAME)
        assert await app.control.aping(timeout=0.5) == []
    finally:
        app.conf.worker_enable_remote_control = True


async def test_event_commands_reach_the_workers_dispatcher(
    app: Celery, start_worker: StartWorker
) -> None:
    worker = await _online(app, start_worker)
    assert worker.events is not None and not worker.events.tasks
    beats: list[object] = []

    def count(sender: object = None, **_: object) -> None:
        beats.append(sender)

    signals.heartbeat_sent.connect(count, weak=False)
    control = app.control
    try:
        replies = [
            await control.aenable_events(reply=True, timeout=2, destination=TO),
            await control.aenable_events(reply=True, timeout=2, destination=TO),
        ]
        enabled = worker.events.tasks
        replies.append(await control.adisable_events(reply=True, timeout=2, destination=TO))
        assert await control.aheartbeat(reply=True, timeout=2, destination=TO) == [{NAME: None}]
    finally:
        signals.heartbeat_sent.disconnect(count)
    assert replies == [
        [{NAME: {"ok": "task events enabled"}}],
        [{NAME: {"ok": "task events already enabled"}}],
        [{NAME: {"ok": "task events disabled"}}],
    ]
    assert enabled and not worker.events.tasks
    assert beats == [worker.events]  # the heartbeat command sent one worker-heartbeat


async def test_a_broadcast_nobody_hears_is_not_a_warning(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert await app.control.aping(timeout=0.2) == []
        await app.control.arate_limit("tests.worker.apps.add", "1/s")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    await app.aclose()


async def test_the_mailbox_rides_out_an_outage_and_logs_it_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("celeriac.control.mailbox.RECEIVE_TIMEOUT", 0.01)
    stopping = asyncio.Event()

    class Blinking:
        calls = 0

        async def receive(self, timeout: float) -> list[Envelope]:
            self.calls += 1
            if self.calls <= 5:
                raise ConnectionError("broker down")
            if self.calls >= 8:
                stopping.set()
            return []

        async def close(self) -> None:
            pass

    class Side:
        hostname = "w1@host"

    mailbox = Mailbox(Side(), None, namespace="celery")  # type: ignore[arg-type]
    subscription = Blinking()
    mailbox._subscription = subscription  # type: ignore[assignment]
    with caplog.at_level(logging.DEBUG, "celeriac.worker.control"):
        await asyncio.wait_for(mailbox.serve(stopping), 10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert subscription.calls == 8
    assert sum("unreachable, retrying" in w for w in warnings) == 1, warnings
    assert sum("back after" in w for w in warnings) == 1, warnings
    assert not mailbox.outage.down
