"""The beat loop with a fake clock and the memory store: leadership, exactly-once ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celeriac import Celery
from celeriac.beat.entry import Entry
from celeriac.beat.scheduler import Beat, BeatOptions, tick_task_id
from celeriac.engines.memory.broker import MemoryTransport, reset_store
from celeriac.engines.memory.schedules import MemoryState, MemoryStore
from celeriac.protocol.message import decode_task
from celeriac.schedules import schedule
from celeriac.testing.clock import FakeClock as _FakeClock

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
NS = "tests"
TICK = Entry("tick", "tasks.tick", schedule(1))
OPTIONS = BeatOptions(max_interval=5.0, lease_seconds=4.0, renew_interval=1.0)


def FakeClock() -> _FakeClock:  # the tests' fake: wall time starts at T0
    return _FakeClock(T0.timestamp())


@dataclass
class Sent:
    holder: str
    entry: str
    task_id: str
    at: datetime


class Cluster:
    """Beats sharing one memory state and one clock, recording what each sends."""

    def __init__(self, entries: list[Entry] | None = None) -> None:
        self.clock = FakeClock()
        self.state = MemoryState()
        self.sent: list[Sent] = []
        self.entries = entries or [TICK]
        self.fail_next = 0

    def store(self) -> MemoryStore:
        return MemoryStore(namespace=NS, state=self.state, clock=self.clock.time)

    def beat(self, name: str, store: MemoryStore | None = None) -> Beat:
        async def send(entry: Entry, task_id: str) -> None:
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("broker down")
            self.sent.append(Sent(name, entry.name, task_id, self.clock.now()))

        app = Celery("tests", broker="memory://beat-unit", set_as_current=False)
        store = store or self.store()
        return Beat(
            app, store, self.entries, options=OPTIONS, clock=self.clock, send=send, holder=name
        )

    async def run(self, beats: list[Beat], seconds: float, step: float = 0.25) -> None:
        """Tick every beat every ``step`` s of fake time for ``seconds``."""
        for _ in range(round(seconds / step)):
            for beat in beats:
                await beat.tick()
            self.clock.advance(step)

    def ids(self, entry: str = "tick") -> list[str]:
        return [s.task_id for s in self.sent if s.entry == entry]


def expected_ids(first: int, last: int, entry: str = "tick") -> list[str]:
    """Task ids of ticks T0+first .. T0+last (1 s interval)."""
    return [tick_task_id(NS, entry, T0 + timedelta(seconds=k)) for k in range(first, last + 1)]


async def test_single_beat_sends_every_tick_once_from_one_interval_after_first_seen() -> None:
    cluster = Cluster()
    beat = cluster.beat("a")
    await cluster.run([beat], 10)  # fake times T0 .. T0+9.75
    assert cluster.ids() == expected_ids(1, 9)
    assert [s.at for s in cluster.sent][:2] == [
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    ]


async def test_restart_neither_refires_nor_skips_and_missed_ticks_run_once() -> None:
    cluster = Cluster()
    first = cluster.beat("a")
    await cluster.run([first], 3)  # sends ticks 1, 2
    await first.shutdown()
    cluster.clock.advance(5.5)  # down from T0+3 to T0+8.5: ticks 3..8 missed
    second = cluster.beat("b")
    await cluster.run([second], 2)  # T0+8.5 .. T0+10.25
    assert cluster.ids() == expected_ids(1, 2) + expected_ids(8, 10)
    assert [s.holder for s in cluster.sent] == ["a", "a", "b", "b", "b"]


async def test_restart_without_downtime_does_not_refire() -> None:
    cluster = Cluster()
    first = cluster.beat("a")
    await cluster.run([first], 2.5)
    await first.shutdown()
    second = cluster.beat("b")
    await cluster.run([second], 0.25)  # T0+2.5: nothing is due
    assert cluster.ids() == expected_ids(1, 2)


async def test_three_beats_one_leader_each_tick_once_and_takeover_after_a_crash() -> None:
    cluster = Cluster()
    beats = [cluster.beat(name) for name in ("a", "b", "c")]
    await cluster.run(beats, 5)
    assert {s.holder for s in cluster.sent} == {"a"}
    assert cluster.ids() == expected_ids(1, 4)
    # "a" dies without releasing its lease: the others wait for it to expire.
    await cluster.run(beats[1:], 7)  # T0+5 .. T0+11.75
    ids = cluster.ids()
    assert ids[:4] == expected_ids(1, 4)
    after = cluster.sent[4:]
    assert {s.holder for s in after} in ({"b"}, {"c"})
    # The ticks missed during the takeover ran once (as the first tick sent after it),
    # then every tick again up to T0+11: no tick twice, no gap after the takeover.
    first = round((after[0].at - T0).total_seconds())
    assert first <= 4 + OPTIONS.lease_seconds + OPTIONS.renew_interval
    assert ids[4:] == expected_ids(first, 11)


async def test_warm_exit_hands_over_at_once() -> None:
    cluster = Cluster()
    a, b = cluster.beat("a"), cluster.beat("b")
    await cluster.run([a, b], 3)
    await a.shutdown()
    await cluster.run([b], 2)  # T0+3 .. T0+4.75, no lease expiry to wait for
    assert cluster.ids() == expected_ids(1, 4)
    assert [s.holder for s in cluster.sent] == ["a", "a", "b", "b"]


async def test_leader_paused_past_its_lease_does_not_send_when_it_resumes() -> None:
    cluster = Cluster()
    a, b = cluster.beat("a"), cluster.beat("b")
    await cluster.run([a, b], 2)
    await cluster.run([b], 8)  # "a" is stopped (SIGSTOP) for 8 s; "b" takes over
    await cluster.run([a, b], 2)  # "a" resumes
    assert [s.holder for s in cluster.sent if s.at >= T0 + timedelta(seconds=10)] == ["b", "b"]
    ids = cluster.ids()
    assert len(ids) == len(set(ids))
    assert not a.is_leader


class PausingStore(MemoryStore):
    """A store whose next claim is preceded (or followed) by a long pause of its process."""

    def __init__(self, cluster: Cluster, during_pause: Callable[[], Any], after: bool) -> None:
        super().__init__(namespace=NS, state=cluster.state, clock=cluster.clock.time)
        self.cluster, self.during_pause, self.after, self.armed = (
            cluster,
            during_pause,
            after,
            False,
        )

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        if self.armed and not self.after:
            await self._pause()
        won = await super().claim(holder, entry, expected, new)
        if self.armed and self.after:
            await self._pause()
        return won

    async def _pause(self) -> None:
        self.armed = False
        self.cluster.clock.advance(6)  # past the 4 s lease
        await self.during_pause()


async def test_pause_between_the_lease_check_and_the_claim_cannot_double_send() -> None:
    cluster = Cluster()
    b = cluster.beat("b")
    store = PausingStore(cluster, lambda: cluster.run([b], 1), after=False)
    a = cluster.beat("a", store)
    await cluster.run([a, b], 2.25)  # "a" leads and sent ticks 1, 2
    cluster.clock.advance(0.75)  # T0+3: tick 3 is due
    store.armed = True
    await a.tick()  # "a" believes it leads; pauses 6 s before claiming; "b" takes over meanwhile
    await cluster.run([a, b], 2)  # T0+10 .. T0+11.75
    # "a"'s claim of tick 3 was refused by the store; "b" ran the missed ticks once (9).
    assert [(s.holder, s.task_id) for s in cluster.sent] == [
        *(("a", i) for i in expected_ids(1, 2)),
        *(("b", i) for i in expected_ids(9, 11)),
    ]


async def test_pause_between_claim_and_publish_gives_the_tick_back() -> None:
    cluster = Cluster()
    store = PausingStore(cluster, lambda: asyncio.sleep(0), after=True)
    a, b = cluster.beat("a", store), cluster.beat("b")
    await cluster.run([a, b], 2.25)
    cluster.clock.advance(0.75)  # T0+3
    store.armed = True
    await a.tick()  # claims tick 3, then is paused 6 s: it must not publish it
    assert cluster.ids() == expected_ids(1, 2)
    await cluster.run([b, a], 1)  # T0+9 .. : "b" takes over and sends the latest tick once
    ids = cluster.ids()
    assert ids[:2] == expected_ids(1, 2)
    assert ids[2] == expected_ids(9, 9)[0]  # ticks 3..9 collapsed into one run
    assert len(ids) == len(set(ids))
    assert {s.holder for s in cluster.sent[2:]} == {"b"}


async def test_failed_publish_is_retried_with_the_same_task_id() -> None:
    cluster = Cluster()
    beat = cluster.beat("a")
    await cluster.run([beat], 0.25)  # first seen
    cluster.clock.advance(0.75)  # T0+1: tick 1 due
    cluster.fail_next = 1
    delay = await beat.tick()
    assert cluster.sent == [] and delay >= OPTIONS.renew_interval  # backs off, no spin
    cluster.clock.advance(0.25)
    await beat.tick()
    assert cluster.ids() == expected_ids(1, 1)


async def test_unbuildable_message_counts_as_run(caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster()
    attempts: list[str] = []

    async def bad(entry: Entry, task_id: str) -> None:
        attempts.append(task_id)
        raise TypeError("apply_async() got unknown option(s): bogus")

    beat = cluster.beat("a")
    beat.send = bad
    await cluster.run([beat], 2.5)
    assert attempts == expected_ids(1, 2)  # each tick tried once, not retried
    assert "cannot send tick" in caplog.text


class LostReplyStore(MemoryStore):
    """Applies the next claim, then fails as if the reply was lost."""

    lose_next = False

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        won = await super().claim(holder, entry, expected, new)
        if self.lose_next and expected is not None:
            self.lose_next = False
            raise ConnectionError("connection reset")
        return won


async def test_claim_with_lost_reply_is_reverted_then_sent() -> None:
    cluster = Cluster()
    store = LostReplyStore(namespace=NS, state=cluster.state, clock=cluster.clock.time)
    beat = cluster.beat("a", store)
    await cluster.run([beat], 1)
    store.lose_next = True
    with pytest.raises(ConnectionError):
        await beat.tick()  # T0+1: the claim of tick 1 applied but the reply was lost
    await beat.tick()
    assert cluster.ids() == expected_ids(1, 1)


async def test_sleep_is_bounded_by_next_run_renewal_and_max_interval() -> None:
    cluster = Cluster([Entry("slow", "t", schedule(2.5))])
    app = Celery("tests", broker="memory://beat-unit", set_as_current=False)
    opts = BeatOptions(max_interval=5.0, lease_seconds=100.0, renew_interval=30.0)
    beat = Beat(app, cluster.store(), cluster.entries, options=opts, clock=cluster.clock)
    assert await beat.tick() == 2.5  # the entry's first run
    follower = Beat(app, cluster.store(), cluster.entries, options=OPTIONS, clock=cluster.clock)
    assert await follower.tick() == OPTIONS.renew_interval
    idle = Beat(app, cluster.store(), [], options=opts, clock=cluster.clock, holder="x")
    await beat.shutdown()
    assert await idle.tick() == 5.0  # nothing scheduled: max_interval


def test_options_from_settings() -> None:
    conf = {"beat_lease_seconds": 2, "beat_max_loop_interval": 3}
    assert BeatOptions.from_conf(conf) == BeatOptions(3.0, 2.0, 0.5)
    assert BeatOptions.from_conf(conf, max_interval=1).max_interval == 1.0
    with pytest.raises(Exception, match="at least twice"):
        BeatOptions(lease_seconds=1, renew_interval=1)


async def test_default_sender_publishes_through_the_app_with_entry_options() -> None:
    reset_store("memory://beat-send")
    app = Celery("tests", broker="memory://beat-send", set_as_current=False)
    entry = Entry(
        "add", "tasks.add", schedule(1), (2, 3), {"z": 1}, {"queue": "periodic", "priority": 7}
    )
    clock = FakeClock()
    store = MemoryStore(namespace=NS, state=MemoryState(), clock=clock.time)
    beat = Beat(app, store, [entry], options=OPTIONS, clock=clock)
    await beat.tick()
    clock.advance(1)
    await beat.tick()
    await app.aclose()
    consumer = MemoryTransport("memory://beat-send")
    await consumer.connect()
    (delivery,) = await consumer.fetch(["periodic"], limit=10, timeout=0)
    message = decode_task(delivery.envelope, {"application/json"})
    assert (message.task, message.id) == ("tasks.add", expected_ids(1, 1, "add")[0])
    assert (message.args, message.kwargs, message.priority) == ([2, 3], {"z": 1}, 7)
    await consumer.close()


async def test_run_stops_on_the_event_and_releases_the_lease() -> None:
    store = MemoryStore(namespace=NS, state=MemoryState())
    stop = asyncio.Event()
    sent: list[str] = []

    async def send(entry: Entry, task_id: str) -> None:
        sent.append(task_id)
        stop.set()

    app = Celery("tests", broker="memory://beat-unit", set_as_current=False)
    opts = BeatOptions(max_interval=0.05, lease_seconds=1.0, renew_interval=0.05)
    beat = Beat(app, store, [Entry("fast", "t", schedule(0.1))], options=opts, send=send)
    await asyncio.wait_for(beat.run(stop), 10)
    assert len(sent) == 1
    assert await store.lease_holder() is None


async def test_a_store_down_at_start_is_ridden_out(caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster()

    class LateStore(MemoryStore):
        refusals = 2

        async def connect(self) -> None:
            if self.refusals:
                self.refusals -= 1
                raise ConnectionError("store down")
            await super().connect()

    store = LateStore(namespace=NS, state=cluster.state, clock=cluster.clock.time)
    beat = cluster.beat("a", store)
    await beat.start()  # does not raise
    with pytest.raises(ConnectionError):
        await beat.tick()  # run() logs it as part of the same outage and tries again
    beat.store_outage.failed(ConnectionError("store down"))
    await cluster.run([beat], 3)
    beat.store_outage.ok()
    assert cluster.ids() == expected_ids(1, 2)
    assert caplog.text.count("unreachable, retrying") == 1
    assert caplog.text.count("back after") == 1


class ChangingSource:
    """An entry source whose entries a test replaces, recording the runs beat reports."""

    def __init__(self, entries: list[Entry]) -> None:
        self.pending: list[Entry] | None = entries
        self.runs: list[tuple[str, datetime]] = []
        self.closed = False

    async def start(self) -> None:
        pass

    async def entries(self) -> list[Entry] | None:
        pending, self.pending = self.pending, None
        return pending

    async def ran(self, entry: Entry, tick: datetime) -> None:
        self.runs.append((entry.name, tick))

    async def close(self) -> None:
        self.closed = True


async def test_a_source_change_is_picked_up_and_each_sent_tick_is_reported() -> None:
    cluster = Cluster()
    source = ChangingSource([TICK])
    app = Celery("tests", broker="memory://beat-unit", set_as_current=False)

    async def send(entry: Entry, task_id: str) -> None:
        cluster.sent.append(Sent("a", entry.name, task_id, cluster.clock.now()))

    beat = Beat(
        app, cluster.store(), options=OPTIONS, clock=cluster.clock, send=send, holder="a",
        source=source,
    )  # fmt: skip
    await beat.start()
    await cluster.run([beat], 3.5)  # ticks 1, 2, 3
    source.pending = [Entry("other", "tasks.other", schedule(2))]  # "tick" removed
    await cluster.run([beat], 4)  # T0+3.5 .. T0+7.25: "other" first seen at 3.5, fires at 5.5
    assert cluster.ids() == expected_ids(1, 3)
    assert [s.entry for s in cluster.sent] == ["tick"] * 3 + ["other"]
    ticks = [(name, tick - T0) for name, tick in source.runs]
    assert ticks == [("tick", timedelta(seconds=k)) for k in (1, 2, 3)] + [
        ("other", timedelta(seconds=5.5))
    ]
    await beat.shutdown()
    assert source.closed
