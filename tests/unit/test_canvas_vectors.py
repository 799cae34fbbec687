"""The worker side of the canvas replayed on messages captured from real Celery (SPEC §2.6, §5.3).

Each captured task message is decoded and handed to ``Workflow`` as if its task had
just finished with the captured result; what celeriac then publishes (or stores) must
be what the Celery worker published (or stored) in the capture.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from celeriac import Celery, states
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import TaskMessage, decode_task, encode_task
from celeriac.trace import Outcome
from celeriac.worker.workflow import Workflow
from tests.vectors import load_vector

_KEYS = ("task", "id", "group", "group_index", "root_id", "parent_id")


def _captured(name: str) -> list[TaskMessage]:
    """Task messages LPUSHed in a capture, in order, decoded."""
    data = load_vector(name)
    found = []
    for command in data["redis_commands"]:
        cmd = command["cmd"]
        if cmd[0] == "LPUSH" and '"headers"' in cmd[2] and '"task"' in cmd[2]:
            raw = json.loads(cmd[2])
            envelope = Envelope(
                body=base64.b64decode(raw["body"]),
                headers=raw["headers"],
                content_type=raw["content-type"],
                content_encoding=raw["content-encoding"],
                properties=raw["properties"],
            )
            found.append(decode_task(envelope, {"json"}))
    return found


def _stored(name: str, task_id: str) -> dict[str, Any]:
    """The last result document the capture wrote for ``task_id``."""
    data = load_vector(name)
    docs = [
        c["cmd"][3]
        for c in data["redis_commands"]
        if c["cmd"][:2] == ["SETEX", f"celery-task-meta-{task_id}"]
    ]
    doc: dict[str, Any] = json.loads(docs[-1])
    return doc


def _wire(msg: TaskMessage) -> tuple[dict[str, Any], Any]:
    """What matters of a message: routing headers and the body (without reply_to)."""
    envelope = encode_task(msg)
    body = json.loads(envelope.body)
    for sig in [*(body[2]["chain"] or []), body[2]["chord"]]:
        if sig:
            sig["options"].pop("reply_to", None)
    return {k: envelope.headers[k] for k in _KEYS}, body


@pytest.fixture
async def app() -> AsyncIterator[Celery]:
    url = f"memory://{uuid.uuid4().hex}"
    the_app = Celery("capapp", broker=url, backend=url, set_as_current=False)
    yield the_app
    await the_app.aclose()


@pytest.fixture
def published(app: Celery, monkeypatch: pytest.MonkeyPatch) -> list[TaskMessage]:
    sent: list[TaskMessage] = []

    async def apublish(requests: Any) -> None:
        sent.extend(r.message for r in requests)

    monkeypatch.setattr(app, "apublish", apublish)
    return sent


async def test_chain_continuation_matches_the_celery_worker(
    app: Celery, published: list[TaskMessage]
) -> None:
    first, second, third = _captured("redis-chain.json")
    workflow = Workflow(app, await app.aget_backend())
    children = await workflow.on_success(first, 2)
    assert children == _stored("redis-chain.json", first.id)["children"]
    children = await workflow.on_success(second, 12)
    assert children == _stored("redis-chain.json", second.id)["children"]
    assert [_wire(m) for m in published] == [_wire(second), _wire(third)]
    assert published[1].chain == []  # the last link gets an empty chain, as Celery sends


async def test_chord_join_matches_the_celery_worker(
    app: Celery, published: list[TaskMessage]
) -> None:
    *headers, body = _captured("redis-chord.json")
    backend = await app.aget_backend()
    await backend.set_chord_size(str(headers[0].group), len(headers))
    workflow = Workflow(app, backend)
    for msg, value in zip(headers, [0, 2, 4], strict=True):
        await workflow.after_success(msg, value)
    assert [_wire(m) for m in published] == [_wire(body)]


async def test_chord_failure_matches_the_celery_worker(
    app: Celery, published: list[TaskMessage]
) -> None:
    ok, bad = _captured("redis-chord-failure.json")
    backend = await app.aget_backend()
    await backend.set_chord_size(str(ok.group), 2)
    workflow = Workflow(app, backend)
    await workflow.after_success(ok, 2)
    error = {"exc_type": "ValueError", "exc_message": ["header boom"], "exc_module": "builtins"}
    await workflow.after_failure(bad, Outcome(state=states.FAILURE, value=error, traceback="..."))
    assert published == []  # the body never runs
    body_id = str(ok.chord["options"]["task_id"]) if ok.chord else ""
    ours = (await backend.get([body_id]))[0]
    theirs = _stored("redis-chord-failure.json", body_id)
    assert ours is not None
    volatile = ("traceback", "date_done")
    assert {k: v for k, v in ours.items() if k not in volatile} == {
        k: v for k, v in theirs.items() if k not in volatile
    }
