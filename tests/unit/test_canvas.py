"""Canvas -> messages: the embeds, headers and ids a canvas publishes (SPEC §2.6).

Publishing is recorded (``app.apublish`` replaced), so these tests are pure: no worker.
"""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, chain, chord, chunks, group, signature, xmap, xstarmap
from celeriac.canvas import Signature, maybe_signature
from celeriac.canvas.errbacks import wants_request
from celeriac.engines.memory.results import MemoryBackend
from celeriac.protocol.message import TaskMessage, encode_task
from celeriac.result import AsyncResult, GroupResult


class Recorder:
    """What a canvas did, in order: ("size", gid, n) and ("publish", [messages])."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @property
    def batches(self) -> list[list[TaskMessage]]:
        return [event[1] for event in self.events if event[0] == "publish"]

    @property
    def messages(self) -> list[TaskMessage]:
        return [m for batch in self.batches for m in batch]

    def body(self, msg: TaskMessage) -> list[Any]:
        """The body exactly as it goes on the wire (JSON-decoded)."""
        decoded: list[Any] = json.loads(encode_task(msg).body)
        return decoded


@pytest.fixture
def app() -> Iterator[Celery]:
    url = f"memory://{uuid.uuid4().hex}"
    yield Celery("ut", broker=url, backend=url, set_as_current=False)


@pytest.fixture
def rec(app: Celery, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()

    async def apublish(requests: Any) -> None:
        recorder.events.append(("publish", [r.message for r in requests]))

    original = MemoryBackend.set_chord_size

    async def set_chord_size(self: MemoryBackend, group_id: str, size: int) -> None:
        recorder.events.append(("size", group_id, size))
        await original(self, group_id, size)

    monkeypatch.setattr(app, "apublish", apublish)
    monkeypatch.setattr(MemoryBackend, "set_chord_size", set_chord_size)
    return recorder


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="t.xsum")
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(name="t.fail")
    def fail() -> None:
        raise ValueError("boom")

    @app.task(name="t.eb")
    def eb(task_id: str) -> str:
        return task_id

    @app.task(name="t.eb_new")
    def eb_new(request: Any, exc: BaseException, traceback: str) -> None:
        return None

    return {"add": add, "mul": mul, "xsum": xsum, "fail": fail, "eb": eb, "eb_new": eb_new}


# --- building ----------------------------------------------------------------------------------
def test_signature_partials_options_and_immutability(tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    sig = add.s(2).set(countdown=5)
    assert dict(sig) == {
        "task": "t.add",
        "args": [2],
        "kwargs": {},
        "options": {"countdown": 5},
        "subtask_type": None,
        "immutable": False,
    }
    assert sig.clone((1,)).args == [1, 2]
    assert add.si(2).clone((1,)).args == [2]
    assert sig(3) == 5  # calling a signature runs the body here
    assert signature("t.add", args=(1, 2)).name == "t.add"


def test_pipe_operator_builds_chains_and_chords(tasks: dict[str, Any]) -> None:
    add, mul, xsum = tasks["add"], tasks["mul"], tasks["xsum"]
    c = add.s(1, 1) | mul.s(2) | add.s(3)
    assert isinstance(c, chain) and [t.name for t in c.tasks] == ["t.add", "t.mul", "t.add"]
    assert [t.name for t in chain(add.s(1, 1) | mul.s(2)).tasks] == ["t.add", "t.mul"]  # seed 003
    assert [t.name for t in (c | (mul.s(1) | mul.s(2))).tasks] == [
        "t.add",
        "t.mul",
        "t.add",
        "t.mul",
        "t.mul",
    ]
    ch = group(add.s(1, 1), add.s(2, 2)) | xsum.s()
    assert isinstance(ch, chord) and ch.body is not None and ch.body.name == "t.xsum"
    extended = ch | mul.s(10)
    assert isinstance(extended, chord) and isinstance(extended.body, chain)
    assert isinstance(group(add.s(1, 1)) | group(add.s(2, 2)), chain)


def test_group_accepts_args_list_and_generator(tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    assert len(group(add.s(1, 1), add.s(2, 2)).tasks) == 2
    assert len(group([add.s(1, 1), add.s(2, 2)]).tasks) == 2
    assert len(group(add.s(i, i) for i in range(3)).tasks) == 3


def test_wire_dicts_come_back_as_their_class(tasks: dict[str, Any], app: Celery) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    for sig in (add.s(1, 1) | add.s(2), group(add.s(1, 1)), chord([add.s(1, 1)], xsum.s())):
        plain = json.loads(json.dumps(sig))
        again = maybe_signature(plain, app)
        assert type(again) is type(sig) and again == sig
        assert type(pickle.loads(pickle.dumps(sig))) is type(sig)
    assert maybe_signature(None) is None


# --- messages ----------------------------------------------------------------------------------
async def test_chain_publishes_first_task_with_reversed_embed(
    tasks: dict[str, Any], rec: Recorder
) -> None:
    add, mul = tasks["add"], tasks["mul"]
    result = await chain(add.s(1, 1), add.s(10), mul.s(2)).aapply_async()
    assert len(rec.messages) == 1
    first = rec.messages[0]
    args, _, embed = rec.body(first)
    assert (first.task, args) == ("t.add", [1, 1])
    assert [(s["task"], s["args"]) for s in embed["chain"]] == [("t.mul", [2]), ("t.add", [10])]
    ids = [s["options"]["task_id"] for s in embed["chain"]]
    assert isinstance(result, AsyncResult) and result.id == ids[0]  # the last task's result
    assert result.parent is not None and result.parent.id == ids[1]
    assert result.parent.parent is not None and result.parent.parent.id == first.id


async def test_group_is_one_batch_with_group_headers(tasks: dict[str, Any], rec: Recorder) -> None:
    add = tasks["add"]
    result = await group(add.s(i, i) for i in range(3)).aapply_async()
    assert len(rec.batches) == 1 and len(rec.messages) == 3
    assert isinstance(result, GroupResult)
    assert [m.group for m in rec.messages] == [result.id] * 3
    assert [m.group_index for m in rec.messages] == [0, 1, 2]
    assert [r.id for r in result.results] == [m.id for m in rec.messages]
    assert all(rec.body(m)[2]["chord"] is None for m in rec.messages)


async def test_chord_sets_size_before_publishing_headers(
    tasks: dict[str, Any], rec: Recorder
) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    result = await chord([add.s(i, i) for i in range(3)], xsum.s()).aapply_async()
    assert rec.events[0][0] == "size" and rec.events[1][0] == "publish"
    gid = rec.events[0][1]
    assert rec.events[0][2] == 3
    assert len(rec.messages) == 3  # the body is not published by the client
    for index, msg in enumerate(rec.messages):
        body = rec.body(msg)[2]["chord"]
        assert (msg.group, msg.group_index) == (gid, index)
        assert body["task"] == "t.xsum"
        assert body["options"]["task_id"] == result.id and body["options"]["group_id"] == gid
    assert isinstance(result.parent, GroupResult) and result.parent.id == gid


async def test_chain_with_group_becomes_chord_step(tasks: dict[str, Any], rec: Recorder) -> None:
    add, xsum, mul = tasks["add"], tasks["xsum"], tasks["mul"]
    result = await chain(add.s(1, 1), group(add.s(1), add.s(2)), xsum.s(), mul.s(10)).aapply_async()
    (first,) = rec.messages
    embed = rec.body(first)[2]["chain"]
    assert [s["task"] for s in embed] == ["t.mul", "celery.chord"]
    step = embed[1]
    assert step["subtask_type"] == "chord"
    header, body = step["kwargs"]["header"], step["kwargs"]["body"]
    assert header["subtask_type"] == "group" and len(header["kwargs"]["tasks"]) == 2
    assert body["task"] == "t.xsum" and body["options"]["task_id"]
    assert result.id == embed[0]["options"]["task_id"]


async def test_group_of_chains_tags_last_tasks(tasks: dict[str, Any], rec: Recorder) -> None:
    add, mul = tasks["add"], tasks["mul"]
    result = await group(add.s(1, 1) | mul.s(2), add.s(2, 2) | mul.s(3)).aapply_async()
    assert [m.group for m in rec.messages] == [None, None]
    lasts = [rec.body(m)[2]["chain"][0]["options"] for m in rec.messages]
    assert [o["group_index"] for o in lasts] == [0, 1]
    assert {o["group_id"] for o in lasts} == {result.id}
    assert [r.id for r in result.results] == [o["task_id"] for o in lasts]


async def test_chord_header_chain_carries_the_chord_on_its_last_task(
    tasks: dict[str, Any], rec: Recorder
) -> None:
    add, mul, xsum = tasks["add"], tasks["mul"], tasks["xsum"]
    await chord([add.s(1, 1) | mul.s(2), add.s(3, 3)], xsum.s()).aapply_async()
    assert rec.events[0] == ("size", rec.events[0][1], 2)
    first, second = rec.messages
    last = rec.body(first)[2]["chain"][0]["options"]
    assert last["chord"]["task"] == "t.xsum" and last["group_index"] == 0
    assert second.group_index == 1 and rec.body(second)[2]["chord"]["task"] == "t.xsum"


async def test_links_are_embedded(tasks: dict[str, Any], rec: Recorder) -> None:
    add, mul, eb = tasks["add"], tasks["mul"], tasks["eb"]
    await add.s(1, 1).aapply_async(link=mul.s(3), link_error=eb.si(5))
    await chain(add.s(1, 1), add.s(2)).aapply_async(link=mul.s(3), link_error=eb.s())
    (_, _, single), (_, _, chained) = (rec.body(m) for m in rec.messages)
    assert [s["task"] for s in single["callbacks"]] == ["t.mul"]
    assert single["errbacks"][0]["immutable"] is True
    # Celery's rule: link_error on every task of a chain, link on the last one only.
    assert chained["callbacks"] is None and chained["errbacks"][0]["task"] == "t.eb"
    last = chained["chain"][0]["options"]
    assert last["link"][0]["task"] == "t.mul" and last["link_error"][0]["task"] == "t.eb"


async def test_chord_link_error_goes_to_the_body(tasks: dict[str, Any], rec: Recorder) -> None:
    add, xsum, eb = tasks["add"], tasks["xsum"], tasks["eb"]
    await chord([add.s(1, 1)], xsum.s()).aapply_async(link_error=eb.s())
    (msg,) = rec.messages
    _, _, embed = rec.body(msg)
    assert embed["errbacks"] is None
    assert embed["chord"]["options"]["link_error"][0]["task"] == "t.eb"


async def test_chunks_map_starmap_use_builtin_tasks(tasks: dict[str, Any], rec: Recorder) -> None:
    add, mul = tasks["add"], tasks["mul"]
    result = await chunks(add.s(), [(1, 1), (2, 2), (3, 3)], 2).aapply_async()
    assert isinstance(result, GroupResult)
    assert [m.task for m in rec.messages] == ["celery.starmap", "celery.starmap"]
    assert [m.kwargs["it"] for m in rec.messages] == [[[1, 1], [2, 2]], [[3, 3]]]
    await xmap(mul.s(), [1, 2]).aapply_async()
    await xstarmap(add.s(), [(1, 2)]).aapply_async()
    assert [m.task for m in rec.messages[2:]] == ["celery.map", "celery.starmap"]
    assert rec.messages[2].kwargs == {"task": dict(mul.s()), "it": [1, 2]}


async def test_empty_chord_header_publishes_the_body_at_once(
    tasks: dict[str, Any], rec: Recorder
) -> None:
    result = await chord([], tasks["xsum"].s()).aapply_async()
    (msg,) = rec.messages
    assert (msg.task, msg.id, msg.args) == ("t.xsum", result.id, [[]])
    assert not [e for e in rec.events if e[0] == "size"]


async def test_frozen_ids_are_kept(tasks: dict[str, Any], rec: Recorder) -> None:
    add, mul = tasks["add"], tasks["mul"]
    c = chain(add.s(1, 1), mul.s(2))
    frozen = c.freeze()
    result = await c.aapply_async()
    assert result.id == frozen.id == c.id


def test_builtin_tasks_are_registered_on_every_app(app: Celery) -> None:
    assert {"celery.map", "celery.starmap", "celery.chunks"} <= set(app.tasks)


def test_errback_calling_convention_follows_arity(tasks: dict[str, Any], app: Celery) -> None:
    assert not wants_request(app, tasks["eb"].s())
    assert wants_request(app, tasks["eb_new"].s())
    assert not wants_request(app, Signature("not.registered"))


# --- eager -------------------------------------------------------------------------------------
def test_eager_canvas(tasks: dict[str, Any], app: Celery) -> None:
    add, mul, xsum = tasks["add"], tasks["mul"], tasks["xsum"]
    app.conf.task_always_eager = True
    assert chain(add.s(1, 1), add.s(10), mul.s(2)).apply_async().get() == 24
    assert group(add.s(1, 1), add.s(2, 2)).apply_async().get() == [2, 4]
    assert chord([add.s(i, i) for i in range(3)], xsum.s()).apply_async().get() == 6
    assert chain(add.s(1, 1), group(add.s(1), add.s(2)), xsum.s()).apply().get() == 7
    assert chunks(add.s(), [(1, 1), (2, 2), (3, 3)], 2).apply().get() == [[2, 4], [6]]
    g = group(add.s(1, 1), add.s(2, 2)).apply()
    assert g.ready() and g.successful() and g.completed_count() == 2


def test_eager_failures(tasks: dict[str, Any], app: Celery) -> None:
    add, fail, xsum, eb = tasks["add"], tasks["fail"], tasks["xsum"], tasks["eb"]
    stopped = chain(add.s(1, 1), fail.si(), add.s(1)).apply()
    assert stopped.failed() and isinstance(stopped.result, ValueError)
    # As Celery's eager chord: the header's exception is raised by apply() itself.
    with pytest.raises(ValueError, match="boom"):
        chord([add.s(1, 1), fail.si()], xsum.s()).apply(link_error=eb.s())


async def test_chord_header_member_ending_in_a_group_is_refused(
    tasks: dict[str, Any], rec: Recorder
) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    header = [add.s(1, 1), chain(add.s(1, 1), group(add.s(1), add.s(2)))]
    with pytest.raises(NotImplementedError, match="ends in a group"):
        await chord(header, xsum.s()).aapply_async()
    with pytest.raises(NotImplementedError):
        await chord([chunks(add.s(), [(1, 1)], 1)], xsum.s()).aapply_async()
    assert rec.events == []  # nothing half-published
