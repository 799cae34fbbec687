"""Events: bodies, framing, batching, the receiver and the state, against the real Celery.

Celery's own classes (``celery.events.event.Event``, ``EventDispatcher``, ``Heart``,
``EventReceiver``, ``State``, the dumper) build or read the same events as ours, and the
captured vectors (SPEC §6) give the exact field sets a Celery worker sends.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Sequence
from typing import Any

import pytest

from celeriac import Celery
from celeriac.cli.events import Dumper
from celeriac.events import Event, EventDispatcher, State, group_from
from celeriac.events.bus import BadEvent, EventChannel, Published, decode_events, encode_events
from celeriac.events.receiver import EventReceiver
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import TaskMessage
from celeriac.trace import Outcome
from celeriac.worker.events import WorkerEvents
from tests.vectors import load_vector

celery = pytest.importorskip("celery")
from celery.events import event as celery_event  # noqa: E402
from celery.events.dumper import Dumper as CeleryDumper  # noqa: E402
from celery.events.state import State as CeleryState  # noqa: E402

pytestmark = pytest.mark.timeout(30)


class FakeBus:
    """Records what a dispatcher publishes."""

    def __init__(self) -> None:
        self.published: list[Published] = []

    async def publish(self, messages: Sequence[Published]) -> None:
        self.published.extend(messages)

    async def subscribe(self, binding: str = "#") -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def captured_events() -> dict[str, dict[str, Any]]:
    """One event of each type a Celery 5.7 worker and client sent (SPEC vectors)."""
    seen: dict[str, dict[str, Any]] = {}
    for name in ("redis-plain.json", "redis-failure.json", "redis-retry.json", "redis-revoke.json"):
        for command in load_vector(name)["redis_commands"]:
            if command["cmd"][0] != "PUBLISH" or "celeryev" not in command["cmd"][1]:
                continue
            envelope = json.loads(command["cmd"][2])
            body = json.loads(base64.b64decode(envelope["body"]))
            for event in body if isinstance(body, list) else [body]:
                seen.setdefault(event["type"], event)
    return seen


CAPTURED = captured_events()


# --- event bodies ---------------------------------------------------------------------------
def test_event_matches_celery_event() -> None:
    ours = Event("task-succeeded", {"uuid": "x"}, result="5", timestamp=12.5)
    theirs = celery_event.Event("task-succeeded", {"uuid": "x"}, result="5", timestamp=12.5)
    assert ours == theirs
    fresh_ours, fresh_theirs = Event("worker-online"), celery_event.Event("worker-online")
    assert set(fresh_ours) == set(fresh_theirs) == {"type", "timestamp"}
    for type in ("task-sent", "worker-heartbeat", "custom-thing-done"):
        assert group_from(type) == celery_event.group_from(type)


def _message(**fields: Any) -> TaskMessage:
    return TaskMessage(id="t-1", task="proj.add", args=[2, 3], kwargs={}, **fields)


async def _worker_events(task_events: bool = True) -> tuple[WorkerEvents, FakeBus]:
    bus = FakeBus()
    dispatcher = EventDispatcher(bus, "w1@host", linger=0.0)
    return WorkerEvents(dispatcher, task_events=task_events, counts=lambda: (1, 7)), bus


def _bodies(bus: FakeBus) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for message in bus.published:
        events.extend(decode_events(message.envelope))
    return events


async def test_every_event_has_the_fields_a_celery_worker_sends() -> None:
    events, bus = await _worker_events()
    msg = _message()
    events.start()  # worker-online
    events.heartbeat()
    events.task_received(msg, object())
    events.task_started(msg, object())
    events.task_outcome(msg, object(), Outcome("SUCCESS", value=5, runtime=0.01))
    events.task_outcome(
        msg, object(), Outcome("FAILURE", exc_repr="ValueError('boom')", traceback="tb")
    )
    events.task_outcome(msg, object(), Outcome("RETRY", exc_repr="Retry()", traceback="tb"))
    events.task_revoked(msg, object(), "revoked")
    await events.stop()  # worker-offline, flushed
    by_type = {e["type"]: e for e in _bodies(bus)}
    for type, celery_body in CAPTURED.items():
        if type == "task-sent":
            continue  # a client's event (tests below)
        assert set(by_type[type]) == set(celery_body), type
        for key, value in celery_body.items():
            if value is not None and by_type[type][key] is not None:
                assert type_of(by_type[type][key]) == type_of(value), (type, key)
    assert by_type["task-succeeded"]["result"] == "5"
    assert by_type["worker-heartbeat"]["active"] == 1
    assert by_type["worker-heartbeat"]["processed"] == 7


def type_of(value: Any) -> type:
    return float if isinstance(value, int | float) and not isinstance(value, bool) else type(value)


async def test_heartbeat_fields_match_celerys_heart() -> None:
    from celery.worker.heartbeat import Heart  # noqa: PLC0415

    sent: list[tuple[str, dict[str, Any]]] = []

    class Eventer:
        enabled = True

        def __init__(self) -> None:
            self.on_enabled: set[Any] = set()
            self.on_disabled: set[Any] = set()

        def send(self, type: str, **fields: Any) -> None:
            sent.append((type, fields))

    Heart(timer=None, eventer=Eventer(), interval=2.0)._send("worker-heartbeat")
    [(_, celery_fields)] = sent
    celery_fields.pop("retry")
    events, bus = await _worker_events()
    events.heartbeat()
    await events.dispatcher.flush()
    [ours] = _bodies(bus)
    assert set(celery_fields) <= set(ours)
    assert ours["freq"] == celery_fields["freq"] == 2.0
    assert ours["sw_sys"] == celery_fields["sw_sys"]


async def test_task_events_are_batched_as_task_multi_worker_events_alone() -> None:
    events, bus = await _worker_events()
    msg = _message()
    events.dispatcher.linger = 10.0  # nothing leaves before the explicit flush
    events.heartbeat()
    for _ in range(3):
        events.task_received(msg, object())
    assert bus.published == []  # sending costs no broker call
    await events.dispatcher.flush()
    keys = [m.routing_key for m in bus.published]
    assert keys == ["worker.heartbeat", "task.multi"]
    batch = json.loads(bus.published[1].envelope.body)
    assert isinstance(batch, list) and [e["type"] for e in batch] == ["task-received"] * 3
    clocks = [e["clock"] for e in _bodies(bus)]
    assert clocks == sorted(clocks) and len(set(clocks)) == 4


async def test_without_task_events_only_worker_events_until_enabled() -> None:
    events, bus = await _worker_events(task_events=False)
    msg = _message()
    events.heartbeat()
    events.dispatcher.send("task-started", uuid="t-0")  # filtered by group, as Celery's
    assert events.tasks is False
    assert events.enable() is True and events.enable() is False
    events.task_started(msg, object())
    assert events.disable() is True
    events.dispatcher.send("task-started", uuid="t-2")
    await events.dispatcher.flush()
    assert [(e["type"], e.get("uuid")) for e in _bodies(bus)] == [
        ("worker-heartbeat", None),
        ("task-started", "t-1"),
    ]


async def test_a_task_with_send_events_false_sends_none() -> None:
    events, bus = await _worker_events()

    class Quiet:
        send_events = False

    events.task_received(_message(), Quiet())
    events.task_started(_message(), Quiet())
    await events.dispatcher.flush()
    assert bus.published == []


async def test_a_failed_publish_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    class Down(FakeBus):
        async def publish(self, messages: Sequence[Published]) -> None:
            raise ConnectionError("broker down")

    dispatcher = EventDispatcher(Down(), "w1@host", linger=0.0)
    dispatcher.send("worker-heartbeat")
    await dispatcher.flush()
    dispatcher.send("worker-heartbeat")
    await dispatcher.flush()
    assert dispatcher.buffered == 0
    assert sum("broker down" in r.getMessage() for r in caplog.records) == 1
    assert dispatcher.dropped == 2


async def test_an_outage_is_logged_once_and_its_end_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Blips(FakeBus):
        down = True

        async def publish(self, messages: Sequence[Published]) -> None:
            if self.down:
                raise ConnectionError("broker down")
            await super().publish(messages)

    bus = Blips()
    dispatcher = EventDispatcher(bus, "w1@host", linger=0.0)
    for _ in range(3):
        dispatcher.send("worker-heartbeat")
        await dispatcher.flush()
    bus.down = False
    dispatcher.send("worker-heartbeat")
    await dispatcher.flush()
    dispatcher.send("worker-heartbeat")
    await dispatcher.flush()
    text = [r.getMessage() for r in caplog.records]
    assert sum("unreachable, retrying" in t for t in text) == 1
    assert sum("back after" in t for t in text) == 1
    assert sum("3 events dropped during the outage" in t for t in text) == 1
    assert len(_bodies(bus)) == 2


async def test_the_buffer_is_bounded_while_a_publish_is_stuck(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("celeriac.events.dispatcher.BUFFER_LIMIT", 5)
    dispatcher = EventDispatcher(FakeBus(), "w1@host", linger=0.0)
    dispatcher._closing = True  # no flusher task: the buffer only fills
    for _ in range(8):
        dispatcher.send("worker-heartbeat")
    assert dispatcher.buffered == 5 and dispatcher.dropped == 3
    assert sum("events dropped (" in r.getMessage() for r in caplog.records) == 1


# --- framing --------------------------------------------------------------------------------
def test_envelope_is_celerys_framing() -> None:
    envelope = encode_events({"type": "worker-heartbeat"}, "w1@host")
    captured = json.loads(
        next(
            c["cmd"][2]
            for c in load_vector("redis-plain.json")["redis_commands"]
            if c["cmd"][0] == "PUBLISH" and c["cmd"][1].endswith("/task.sent")
        )
    )
    assert envelope.headers == {"hostname": "w1@host"}
    assert envelope.content_type == captured["content-type"]
    assert envelope.content_encoding == captured["content-encoding"]
    assert envelope.properties["delivery_mode"] == captured["properties"]["delivery_mode"]


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b"not json", "application/json", "does not decode"),
        (b"[1, 2]", "application/json", "no event"),
        (b'{"no": "type"}', "application/json", "no event"),
        (b"\x80\x04", "application/x-python-serialize", "not accepted"),
    ],
)
def test_bad_event_messages_say_why(body: bytes, content_type: str, why: str) -> None:
    with pytest.raises(BadEvent, match=why):
        decode_events(Envelope(body=body, content_type=content_type))


def test_receiver_drops_bad_messages_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    receiver = EventReceiver(FakeBus())
    for _ in range(3):
        assert receiver.events_of(Envelope(body=b"junk")) == []
    assert sum("dropped a message" in r.getMessage() for r in caplog.records) == 1
    good = encode_events([{"type": "task-started", "uuid": "u", "clock": 3}], "w@h")
    [event] = receiver.events_of(good)
    assert event["uuid"] == "u" and "local_received" in event


def test_receiver_adjusts_clock_and_time_as_celerys() -> None:
    app = celery.Celery(broker="memory://")
    theirs = app.events.Receiver(app.connection(), handlers={})
    ours = EventReceiver(FakeBus())
    theirs.clock.value = ours.clock.value = 10
    for body in (
        {"type": "worker-heartbeat", "clock": 42, "timestamp": 100.0, "utcoffset": 2.0},
        {"type": "task-sent", "clock": 3, "timestamp": 100.0, "utcoffset": 0.0},
        {"type": "task-started", "timestamp": 50.0, "utcoffset": -1.0},
    ):
        _, a = theirs.event_from_message(dict(body))
        _, b = ours.event_from_message(dict(body))
        assert a["clock"] == b["clock"]
        assert a["timestamp"] == pytest.approx(b["timestamp"])
    assert theirs.clock.value == ours.clock.value


# --- state ----------------------------------------------------------------------------------
def _stream() -> list[dict[str, Any]]:
    """A worker's life with three tasks, one of whose events come out of order."""
    t0 = 1_000.0
    base = {"hostname": "w1@host", "utcoffset": 0.0, "pid": 42}
    hb = {"freq": 2.0, "active": 0, "processed": 0, "loadavg": [0.1, 0.1, 0.1]}
    rows: list[dict[str, Any]] = [
        {"type": "worker-online", "timestamp": t0, **hb},
        {"type": "task-received", "uuid": "a", "name": "proj.add", "args": "(2, 3)",
         "kwargs": "{}", "retries": 0, "root_id": "a", "parent_id": None, "timestamp": t0 + 1},
        {"type": "task-started", "uuid": "a", "timestamp": t0 + 2},
        {"type": "task-succeeded", "uuid": "a", "result": "5", "runtime": 0.5,
         "timestamp": t0 + 3},
        {"type": "task-succeeded", "uuid": "b", "result": "1", "runtime": 0.1,
         "timestamp": t0 + 4},
        {"type": "task-received", "uuid": "b", "name": "proj.one", "args": "()",
         "kwargs": "{}", "retries": 0, "root_id": "b", "parent_id": "a", "timestamp": t0 + 3.5},
        {"type": "task-received", "uuid": "c", "name": "proj.boom", "args": "()",
         "kwargs": "{}", "retries": 0, "root_id": "c", "parent_id": None, "timestamp": t0 + 5},
        {"type": "task-retried", "uuid": "c", "exception": "E()", "traceback": "tb",
         "timestamp": t0 + 6},
        {"type": "task-failed", "uuid": "c", "exception": "E()", "traceback": "tb",
         "timestamp": t0 + 7},
        {"type": "worker-heartbeat", "timestamp": t0 + 8, **hb, "processed": 3},
    ]  # fmt: skip
    for clock, row in enumerate(rows, 1):
        row.update(base, clock=clock, local_received=row["timestamp"])
    return rows


def test_state_agrees_with_celerys_state() -> None:
    ours, theirs = State(), CeleryState()
    for event in _stream():
        ours.event(dict(event))
        theirs.event(dict(event))
    assert ours.event_count == theirs.event_count
    assert ours.task_count == theirs.task_count
    assert set(ours.tasks) == set(theirs.tasks)
    for uuid, task in theirs.tasks.items():
        mine = ours.tasks[uuid]
        for field in ("state", "name", "args", "result", "exception", "runtime", "parent_id",
                      "root_id", "received", "started", "succeeded", "failed", "retried",
                      "timestamp", "ready"):  # fmt: skip
            assert getattr(mine, field) == getattr(task, field), (uuid, field)
        assert mine.worker is not None and mine.worker.hostname == task.worker.hostname
    worker, celery_worker = ours.workers["w1@host"], theirs.workers["w1@host"]
    for field in ("freq", "processed", "active", "pid", "heartbeats", "heartbeat_expires"):
        assert getattr(worker, field) == getattr(celery_worker, field), field
    assert ours.task_types() == theirs.task_types()
    assert [u for u, _ in ours.tasks_by_time()] == [u for u, _ in theirs.tasks_by_time()]
    assert [s for s, _ in ours.tasks["c"].timeline] == ["RECEIVED", "RETRY", "FAILURE"]


def test_state_offline_and_alive() -> None:
    state = State()
    now = __import__("time").time()
    state.event({"type": "worker-heartbeat", "hostname": "w@h", "freq": 2.0,
                 "timestamp": now, "local_received": now})  # fmt: skip
    assert [w.hostname for w in state.alive_workers()] == ["w@h"]
    state.event({"type": "worker-offline", "hostname": "w@h", "timestamp": now,
                 "local_received": now})  # fmt: skip
    assert "w@h" not in state.workers
    stale = now - 10
    state.event({"type": "worker-heartbeat", "hostname": "old@h", "freq": 2.0,
                 "timestamp": stale, "local_received": stale})  # fmt: skip
    assert state.workers["old@h"].alive is False
    assert state.workers["old@h"].status_string == "OFFLINE"


def test_state_is_bounded() -> None:
    state = State(max_tasks_in_memory=3, max_workers_in_memory=2)
    for i in range(10):
        state.event({"type": "task-started", "uuid": f"t{i}", "hostname": f"w{i}@h",
                     "timestamp": float(i), "local_received": float(i)})  # fmt: skip
    assert list(state.tasks) == ["t7", "t8", "t9"]
    assert len(state.workers) == 2


# --- the app surface and the dump ------------------------------------------------------------
def test_app_events_surface() -> None:
    app = Celery("t", broker="memory://events-surface")
    assert app.events.supported
    assert isinstance(app.events.State(max_tasks_in_memory=5), State)
    assert app.events.channel == EventChannel()
    app.conf.update(event_exchange="myev", event_queue_ttl=1.5, event_queue_prefix="mine")
    assert app.events.channel.exchange == "myev"
    assert app.events.channel.queue_ttl == 1.5
    assert app.events.channel.queue_prefix == "mine"


async def test_memory_bus_round_trip_through_app_dispatcher_and_receiver() -> None:
    app = Celery("t", broker="memory://events-round-trip")
    got: list[dict[str, Any]] = []
    receiver = app.events.Receiver(handlers={"task-succeeded": got.append})
    dispatcher = app.events.Dispatcher(hostname="w@h")
    stream = receiver.aiter_events(limit=2, timeout=5)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)  # the receiver has subscribed
    dispatcher.send("task-succeeded", uuid="u1", result="1", runtime=0.1)
    dispatcher.send("worker-heartbeat", freq=2.0)
    await dispatcher.flush()
    assert (await first)["type"] in ("task-succeeded", "worker-heartbeat")
    await anext(stream)
    await stream.aclose()
    assert [e["uuid"] for e in got] == ["u1"]
    await dispatcher.close()


def test_dump_lines_match_celerys_dumper() -> None:
    rows = [
        {"type": "worker-online", "hostname": "w@h", "timestamp": 1.5, "freq": 2.0, "pid": 1},
        {"type": "task-received", "hostname": "w@h", "timestamp": 2.0, "uuid": "u",
         "name": "proj.add", "args": "(2, 3)", "kwargs": "{}", "retries": 0},
        {"type": "task-succeeded", "hostname": "w@h", "timestamp": 3.0, "uuid": "u",
         "result": "5", "runtime": 0.1},
    ]  # fmt: skip
    ours, theirs = io.StringIO(), io.StringIO()
    mine, celerys = Dumper(out=ours), CeleryDumper(out=theirs)
    for row in rows:
        mine.on_event(dict(row))
        celerys.on_event(dict(row))
    assert ours.getvalue() == theirs.getvalue()


# --- the local engines' buses and the live view ----------------------------------------------
async def test_sqlite_bus_filters_by_binding_and_prunes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celeriac.engines.sqlite import events as sqlite_events  # noqa: PLC0415

    bus = sqlite_events.SQLiteEventBus(f"sqlite:///{tmp_path / 'b.sqlite'}", {}, EventChannel())
    monkeypatch.setattr(sqlite_events, "POLL_INTERVAL", 0.01)
    old = Published("worker.heartbeat", encode_events({"type": "worker-heartbeat"}, "w@h"))
    await bus.publish([old])  # before the subscription: never seen
    workers = await bus.subscribe("worker.#")
    everything = await bus.subscribe("#")
    task = Published("task.multi", encode_events([{"type": "task-started", "uuid": "u"}], "w@h"))
    await bus.publish([task, old])
    [only_worker] = await workers.receive(1.0)
    assert decode_events(only_worker)[0]["type"] == "worker-heartbeat"
    assert [decode_events(e)[0]["type"] for e in await everything.receive(1.0)] == [
        "task-started",
        "worker-heartbeat",
    ]
    assert await workers.receive(0.05) == []
    clock = [__import__("time").time() + 3600]  # an hour later: every row has expired
    monkeypatch.setattr(sqlite_events.time, "time", lambda: clock[0])
    await bus.publish([old])

    def count(conn: Any) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM celeriac_events").fetchone()[0])

    assert await bus._file.call(count) == 1  # only the newest row is left
    await bus.close()


async def test_memory_bus_drops_messages_older_than_the_queue_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celeriac.engines.memory import events as memory_events  # noqa: PLC0415

    bus = memory_events.MemoryEventBus("memory://ttl-test", {}, EventChannel(queue_ttl=5.0))
    sub = await bus.subscribe("#")
    now = [1000.0]
    monkeypatch.setattr(memory_events.time, "monotonic", lambda: now[0])
    message = Published("worker.heartbeat", encode_events({"type": "worker-heartbeat"}, "w@h"))
    await bus.publish([message])
    now[0] += 10.0  # the receiver was away longer than event_queue_ttl
    await bus.publish([message])
    assert len(await sub.receive(0.1)) == 1
    await sub.close()
    await bus.publish([message])
    assert await sub.receive(0.01) == []


def test_live_view_lists_workers_and_tasks() -> None:
    pytest.importorskip("rich")
    from rich.console import Console  # noqa: PLC0415

    from celeriac.cli.monitor import render  # noqa: PLC0415

    state = State()
    for event in _stream():
        state.event(dict(event))
    console = Console(record=True, width=200)
    console.print(render(state, Celery("t", broker="memory://view")))
    text = console.export_text()
    assert "w1@host" in text and "proj.add" in text and "SUCCESS" in text
    assert "FAILURE" in text and "E()" in text


async def test_without_heartbeat_no_worker_events_but_task_events() -> None:
    bus = FakeBus()
    dispatcher = EventDispatcher(bus, "w1@host", linger=0.0)
    events = WorkerEvents(dispatcher, task_events=True, counts=lambda: (0, 0), heartbeat=False)
    events.start()
    events.task_started(_message(), object())
    await events.stop()
    assert [e["type"] for e in _bodies(bus)] == ["task-started"]


def test_exclusive_and_durable_receiver_queues_are_refused() -> None:
    from celeriac.exceptions import ImproperlyConfigured  # noqa: PLC0415

    with pytest.raises(ImproperlyConfigured, match="exclusive and durable"):
        EventChannel.from_conf({"event_queue_exclusive": True, "event_queue_durable": True})
    assert EventChannel.from_conf({"event_queue_exclusive": False, "event_queue_durable": True})


def test_events_dump_command_prints_the_capture_banner_and_ends_at_its_timeout() -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from celeriac.cli.main import cli  # noqa: PLC0415

    result = CliRunner().invoke(
        cli, ["-b", "memory://cli-dump", "events", "--dump", "--timeout", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "-> evdump: starting capture..."
