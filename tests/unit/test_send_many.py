"""``app.send_many``: many task calls in one batch, checked before anything is sent.

Each item publishes what ``sig.apply_async()`` publishes (same bytes once the ids are the
same), a bad item raises naming its index with nothing sent, and batches larger than
``bulk.CHUNK`` go out in several publishes. The bytes of every golden publish case are
also produced through the bulk path.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest

from celeriac import Celery, bulk, group, signals
from celeriac.canvas import chunks
from celeriac.canvas.signature import Signature
from celeriac.context import Context, request_var
from celeriac.exceptions import NotRegistered, SerializationError
from celeriac.protocol import kombu
from celeriac.protocol.message import decode_task, encode_task
from celeriac.result import AsyncResult
from celeriac.task import Task
from celeriac.transport import Outgoing
from tests.unit import publish_cases

_ETA = dt.datetime(2099, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture
def app() -> Celery:
    return Celery("bulk", broker=f"memory://bulk-{uuid.uuid4().hex}", set_as_current=False)


@pytest.fixture
def add(app: Celery) -> Task:
    @app.task(name="bulk.add")
    def add(x: int, y: int) -> int:
        """Adds."""
        return x + y

    return add


class Sent:
    """The transport publishes of an app, recorded (and still performed)."""

    def __init__(self, app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
        self.publishes: list[list[Outgoing]] = []
        self.requests: list[Any] = []
        send = app._send

        async def recording(transport: Any, outgoing: list[Outgoing], requests: Any) -> None:
            self.publishes.append(list(outgoing))
            self.requests += requests
            await send(transport, outgoing, requests)

        monkeypatch.setattr(app, "_send", recording)

    @property
    def messages(self) -> list[Any]:
        return [decode_task(o.envelope, ["json"]) for p in self.publishes for o in p]


async def _queued(app: Celery, queue: str = "celery") -> list[Any]:
    transport = await app.aget_transport()
    deliveries = await transport.fetch([queue], limit=100_000, timeout=0.5)
    return [decode_task(d.envelope, ["json"]) for d in deliveries]


async def test_send_many_publishes_every_item_once_in_one_publish(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    results = await app.asend_many([add.s(1, 2), add.s(3, 4).set(countdown=5), add.si(5, 6)])
    assert [type(r) for r in results] == [AsyncResult] * 3
    assert len(sent.publishes) == 1
    messages = sent.messages
    assert [m.id for m in messages] == [r.id for r in results]
    assert [m.args for m in messages] == [[1, 2], [3, 4], [5, 6]]
    assert messages[0].eta is None and messages[1].eta is not None
    assert sorted(m.id for m in await _queued(app)) == sorted(r.id for r in results)
    await app.aclose()


def test_sync_send_many_reaches_the_queue(app: Celery, add: Task) -> None:
    results = app.send_many(add.s(i, i) for i in range(50))
    queued = app.run_sync(_queued(app))
    assert sorted(m.id for m in queued) == sorted(r.id for r in results)
    assert sorted(m.args[0] for m in queued) == list(range(50))
    app.close()


async def test_options_apply_to_every_item_over_its_own(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    await app.asend_many(
        [add.s(1, 1).set(priority=1, queue="own"), add.s(2, 2)], priority=7, expires=60
    )
    messages = sent.messages
    assert [m.priority for m in messages] == [7, 7]
    assert all(m.expires is not None for m in messages)
    [first, second] = sent.publishes[0]
    assert (first.routing_key, second.routing_key) == ("own", "celery")
    await app.aclose()


async def test_each_item_gives_the_bytes_its_apply_async_gives(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    items = [
        add.s(1, 2).set(task_id="id-1"),
        add.s(3).set(task_id="id-2", eta=_ETA, headers={"x-h": 1}, link=add.s(9)),
        add.s(x=1, y=2).set(task_id="id-3", queue="q", priority=3, time_limit=2.5),
    ]
    await app.asend_many(items)
    for item in items:
        await item.aapply_async()
    bulk_sent, single = sent.publishes[0], [p[0] for p in sent.publishes[1:]]
    assert [_stored(o) for o in bulk_sent] == [_stored(o) for o in single]
    await app.aclose()


@pytest.mark.parametrize("in_task", [False, True])
async def test_calls_of_one_task_encoded_from_the_first_give_their_own_bytes(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch, in_task: bool
) -> None:
    @app.task(name="bulk.other", time_limit=5, priority=4)
    def other(*args: Any, **kwargs: Any) -> None:
        """Options of its own."""

    sent = Sent(app, monkeypatch)
    items = [add.s(1, 2), other.s(), add.s(3, "é"), other.s([1], k=None), add.s(), add.si(5, 6)]
    token = request_var.set(Context(id="p", root_id="r", task="t")) if in_task else None
    try:
        await app.asend_many(items)
    finally:
        if token is not None:
            request_var.reset(token)
    assert [r.like is not None for r in sent.requests] == [False, False, True, True, True, True]
    for request, out in zip(sent.requests, sent.publishes[0], strict=True):
        alone = encode_task(request.message, request.serializer)
        assert alone.plain == out.envelope.plain
        assert _stored(out) == _stored(Outgoing(alone, out.exchange, out.routing_key))
    await app.aclose()


def _stored(out: Outgoing) -> bytes:
    """The stored bytes of a message on Redis, with a fixed delivery tag."""
    raw = kombu.encode(
        out.envelope, exchange=out.exchange, routing_key=out.routing_key, delivery_tag="tag"
    )
    return publish_cases._ORIGIN.sub(b"o", raw)


async def test_an_unknown_task_raises_naming_the_item_and_nothing_is_sent(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    with pytest.raises(NotRegistered, match=r"item 1 of send_many\(\).*'bulk.nope'"):
        await app.asend_many([add.s(1, 2), app.signature("bulk.nope"), add.s(3, 4)])
    assert sent.publishes == []
    assert await _queued(app) == []
    await app.aclose()


async def test_an_unserializable_argument_raises_naming_the_item_and_nothing_is_sent(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    monkeypatch.setattr(bulk, "CHUNK", 2)  # the bad item is in the second chunk
    items = [add.s(1, 2), add.s(3, 4), add.s(5, 6), add.s(object(), 1)]
    with pytest.raises(SerializationError, match=r"item 3 of send_many\(\).*argument 0"):
        await app.asend_many(items)
    assert sent.publishes == []
    assert await _queued(app) == []
    await app.aclose()


async def test_a_bad_option_raises_naming_the_item(app: Celery, add: Task) -> None:
    with pytest.raises(TypeError, match=r"item 2 of send_many\(\).*unknown option"):
        await app.asend_many([add.s(1, 2), add.s(1, 2), add.s(1, 2).set(bogus=1)])
    with pytest.raises(TypeError, match=r"item 0 of send_many\(\).*not a signature"):
        await app.asend_many([42])
    await app.aclose()


async def test_a_large_batch_goes_out_in_chunks_in_order(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    monkeypatch.setattr(bulk, "CHUNK", 4)
    results = await app.asend_many(add.s(i, 0) for i in range(10))
    assert [len(p) for p in sent.publishes] == [4, 4, 2]
    assert [m.args[0] for m in sent.messages] == list(range(10))
    assert [m.id for m in sent.messages] == [r.id for r in results]
    assert len(await _queued(app)) == 10
    await app.aclose()


async def test_canvas_items_and_dicts_are_published_in_the_same_batch(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    results = await app.asend_many(
        [dict(add.s(1, 2)), add.s(1, 1) | add.s(5), group(add.s(2, 2), add.s(3, 3))]
    )
    assert len(sent.publishes) == 1
    ids = [m.id for m in sent.messages]
    assert ids[0] == results[0].id and ids[1] == results[1].parent.id
    assert ids[2:] == [r.id for r in results[2].results]
    assert [m.task for m in sent.messages] == ["bulk.add"] * 4
    await app.aclose()


async def test_group_and_chunks_publish_all_members_in_one_publish(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    result = await group(add.s(i, i) for i in range(25)).aapply_async()
    await chunks(add.s(), [(i, i) for i in range(10)], 3).aapply_async()
    assert [len(p) for p in sent.publishes] == [25, 4]
    members = sent.messages[:25]
    assert [m.group for m in members] == [result.id] * 25
    assert [m.group_index for m in members] == list(range(25))
    await app.aclose()


async def test_publishing_from_a_task_records_children_and_parent(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    request = Context(id="parent-id", root_id="root-id", task="bulk.add")
    token = request_var.set(request)
    try:
        results = await app.asend_many([add.s(1, 2), add.s(3, 4)])
    finally:
        request_var.reset(token)
    assert request.children == results
    assert {(m.parent_id, m.root_id) for m in sent.messages} == {("parent-id", "root-id")}
    await app.aclose()


def test_eager_send_many_runs_each_item_here(app: Celery, add: Task) -> None:
    app.conf.task_always_eager = True
    assert [r.get() for r in app.send_many([add.s(1, 2), add.s(3, 4)])] == [3, 7]


async def test_publish_signals_are_sent_for_every_item(
    app: Celery, add: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []

    def before(sender: Any, headers: dict[str, Any], **_: Any) -> None:
        headers["x-seen"] = "1"
        seen.append(("before", headers["id"]))

    def after(sender: Any, headers: dict[str, Any], **_: Any) -> None:
        seen.append(("after", headers["id"]))

    monkeypatch.setattr(bulk, "CHUNK", 2)
    signals.before_task_publish.connect(before)
    signals.after_task_publish.connect(after)
    try:
        results = await app.asend_many(add.s(i, i) for i in range(3))
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
    ids = [r.id for r in results]
    before_all = [("before", i) for i in ids]
    assert seen == [*before_all, ("after", ids[0]), ("after", ids[1]), ("after", ids[2])]
    assert all(m.headers == {"x-seen": "1"} for m in await _queued(app))
    await app.aclose()


def _bulk_published(
    app: Celery, task: Task, args: Any = (), kwargs: Any = None, **options: Any
) -> dict[str, Any]:
    """What :func:`publish_cases.published` records, with the message built by
    ``bulk.prepare`` from the signature of the call (``send_many``'s path) and encoded by
    the batch encoder. A signature holds its arguments as a list, which argsrepr shows as
    one (``[1, 2]``, where ``apply_async(args=(1, 2))`` shows ``(1, 2)``): argsrepr is
    blanked on both sides."""
    sig = Signature(task.name, args, kwargs or {}, options, app=app)
    batch = bulk.prepare(app, [sig], {})
    [request] = batch.dispatch.requests
    [out] = app._outgoing([request], batch.owners)
    queue = request.route.queue
    raw = kombu.encode(
        out.envelope, exchange=out.exchange, routing_key=out.routing_key, delivery_tag="tag"
    )
    return {
        "exchange": out.exchange,
        "routing_key": out.routing_key,
        "queue": queue.name if queue else None,
        "not_before": out.not_before,
        "raw": publish_cases._ORIGIN.sub(b"gen@origin", raw).decode(
            "utf-8", errors="surrogateescape"
        ),
    }


_ARGSREPR = re.compile(r'"argsrepr":("[^"\\]*(?:\\.[^"\\]*)*"|null)')


def _blank_argsrepr(recorded: dict[str, Any]) -> dict[str, Any]:
    return {**recorded, "raw": _ARGSREPR.sub('"argsrepr":"-"', recorded["raw"])}


def test_the_bulk_path_gives_every_golden_case_its_recorded_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    golden = json.loads(publish_cases.GOLDEN.read_text())
    monkeypatch.setattr(publish_cases, "published", _bulk_published)
    produced = dict(publish_cases.cases())
    assert set(produced) == set(golden)
    # A signature carries its stamps as options named by ``stamped_headers`` (Celery's
    # canvas form); apply_async's ``stamps=`` of that case is no signature's option.
    differing = [
        name
        for name in sorted(set(golden) - {"stamps-options"})
        if _blank_argsrepr(produced[name]()) != _blank_argsrepr(golden[name])
    ]
    assert differing == []


async def test_calls_routed_by_their_arguments_or_expiring_per_call_are_not_copied(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def by_argument(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> Any:
        return {"queue": f"q{args[0]}"} if name == "bulk.routed" else None

    app.conf.task_routes = (by_argument,)

    @app.task(name="bulk.routed")
    def routed(x: int) -> None:
        """Routed by its argument."""

    @app.task(name="bulk.expiring", expires=30)
    def expiring() -> None:
        """Expires 30 s after each call."""

    sent = Sent(app, monkeypatch)
    await app.asend_many([routed.s(1), routed.s(2), expiring.s(), expiring.s()])
    assert [o.routing_key for o in sent.publishes[0][:2]] == ["q1", "q2"]
    assert [r.like for r in sent.requests] == [None] * 4
    await app.aclose()
