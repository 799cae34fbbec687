"""The messages of each canvas form, compared with what the real ``celery`` client sends.

Both clients build the same canvas over tasks of the same names; every message is
recorded (Celery's ``before_task_publish`` signal, celeriac's ``apublish``), ids are
renamed in order of appearance and ``reply_to`` (Celery's process id) is dropped.
The rest must be identical: headers that matter to workers and the whole body.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import celeriac
from celeriac.protocol.message import encode_task

celery = pytest.importorskip("celery", reason="the real celery package is the reference")
celery_signals = pytest.importorskip("celery.signals")

pytestmark = pytest.mark.interop

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEADERS = ("task", "id", "group", "group_index", "root_id", "parent_id")


def _drop_reply_to(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_reply_to(v) for k, v in value.items() if k != "reply_to"}
    if isinstance(value, list | tuple):
        return [_drop_reply_to(v) for v in value]
    return value


def _normalized(
    messages: list[tuple[dict[str, Any], Any]], clean: Callable[[Any], Any] = _drop_reply_to
) -> list[Any]:
    names: dict[str, str] = {}
    text = json.dumps(
        [[{k: h.get(k) for k in _HEADERS}, clean(b)] for h, b in messages], sort_keys=True
    )
    return json.loads(_UUID.sub(lambda m: names.setdefault(m.group(0), f"<id{len(names)}>"), text))  # type: ignore[no-any-return]


class Side:
    """One client (Celery or celeriac) with its tasks and recorded messages."""

    def __init__(self, lib: Any, app: Any) -> None:
        self.lib, self.app = lib, app
        self.sent: list[tuple[dict[str, Any], Any]] = []
        self.t: dict[str, Any] = {
            name: app.task(name=f"capapp.{name}")(fun) for name, fun in _FUNCTIONS.items()
        }


def _add(x: int, y: int) -> int:
    return x + y


def _mul(x: int, y: int) -> int:
    return x * y


def _xsum(numbers: list[int]) -> int:
    return sum(numbers)


def _eb(task_id: str) -> None:
    return None


_FUNCTIONS = {"add": _add, "mul": _mul, "xsum": _xsum, "eb": _eb}


@pytest.fixture
def sides() -> Iterator[tuple[Side, Side]]:
    theirs = Side(
        celery,
        celery.Celery(
            "capapp", broker="memory://", backend="cache+memory://", set_as_current=False
        ),
    )
    url = f"memory://{uuid.uuid4().hex}"
    ours = Side(celeriac, celeriac.Celery("capapp", broker=url, backend=url, set_as_current=False))

    def record_theirs(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
        theirs.sent.append((dict(headers), body))

    async def record_ours(requests: Any) -> None:
        for request in requests:
            envelope = encode_task(request.message, request.serializer)
            ours.sent.append((envelope.headers, json.loads(envelope.body)))

    ours.app.apublish = record_ours
    celery_signals.before_task_publish.connect(record_theirs, weak=False)
    yield theirs, ours
    celery_signals.before_task_publish.disconnect(record_theirs)


Build = Callable[[Side], Any]
CASES: dict[str, Build] = {
    "chain": lambda s: s.lib.chain(
        s.t["add"].s(1, 1), s.t["add"].s(10), s.t["mul"].s(2)
    ).apply_async(),
    "chain of a pipe (seed 003)": lambda s: s.lib.chain(
        s.t["add"].s(1, 1) | s.t["mul"].s(2)
    ).apply_async(),
    "group": lambda s: s.lib.group(s.t["add"].s(1, 1), s.t["add"].s(2, 2)).apply_async(),
    "group of a generator": lambda s: s.lib.group(
        s.t["add"].s(i, i) for i in range(3)
    ).apply_async(),
    "group of chains": lambda s: s.lib.group(
        s.t["add"].s(1, 1) | s.t["mul"].s(2), s.t["add"].s(2, 2) | s.t["mul"].s(3)
    ).apply_async(),
    "chord": lambda s: s.lib.chord(
        [s.t["add"].s(1, 1), s.t["add"].s(2, 2)], s.t["xsum"].s()
    ).apply_async(),
    "chord(header)(body)": lambda s: s.lib.chord([s.t["add"].s(1, 1)])(s.t["xsum"].s()),
    "group | task": lambda s: (
        s.lib.group(s.t["add"].s(1, 1), s.t["add"].s(2, 2)) | s.t["xsum"].s()
    ).apply_async(),
    "chord with a chain body": lambda s: s.lib.chord(
        [s.t["add"].s(1, 1)], s.t["xsum"].s() | s.t["mul"].s(2)
    ).apply_async(),
    "chord with a chain in the header": lambda s: s.lib.chord(
        [s.t["add"].s(1, 1) | s.t["mul"].s(2), s.t["add"].s(3, 3)], s.t["xsum"].s()
    ).apply_async(),
    "chord link_error": lambda s: s.lib.chord([s.t["add"].s(1, 1)], s.t["xsum"].s()).apply_async(
        link_error=s.t["eb"].s()
    ),
    "chain link and link_error": lambda s: s.lib.chain(
        s.t["add"].s(1, 1), s.t["add"].s(2)
    ).apply_async(link=s.t["mul"].s(3), link_error=s.t["eb"].s()),
    "signature link and link_error": lambda s: (
        s.t["add"].s(1, 1).apply_async(link=s.t["mul"].s(3), link_error=s.t["eb"].si(5))
    ),
    "chunks": lambda s: (
        s.t["add"].chunks([(1, 1), (2, 2), (3, 3)], 2)
        if s.lib is celery
        else s.lib.chunks(s.t["add"].s(), [(1, 1), (2, 2), (3, 3)], 2)
    ).apply_async(),
    "map": lambda s: (
        s.t["mul"].map([1, 2]) if s.lib is celery else s.lib.xmap(s.t["mul"].s(), [1, 2])
    ).apply_async(),
    "starmap": lambda s: (
        s.t["add"].starmap([(1, 2)])
        if s.lib is celery
        else s.lib.xstarmap(s.t["add"].s(), [(1, 2)])
    ).apply_async(),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_messages_as_celery(case: str, sides: tuple[Side, Side]) -> None:
    theirs, ours = sides
    CASES[case](theirs)
    CASES[case](ours)
    assert ours.sent, "nothing was published"
    assert _normalized(ours.sent) == _normalized(theirs.sent)


def _strip_group_ids(value: Any) -> Any:
    if isinstance(value, dict):
        skip = ("group_id", "parent_id", "root_id", "reply_to")
        return {k: _strip_group_ids(v) for k, v in value.items() if k not in skip}
    if isinstance(value, list | tuple):
        return [_strip_group_ids(v) for v in value]
    return value


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.lib.chain(
            s.t["add"].s(1, 1), s.lib.group(s.t["add"].s(1), s.t["add"].s(2)), s.t["xsum"].s()
        ),
        lambda s: s.lib.chain(
            s.t["add"].s(1, 1),
            s.lib.chord([s.t["add"].s(1), s.t["add"].s(2)], s.t["xsum"].s()),
            s.t["mul"].s(10),
        ),
        lambda s: s.lib.chain(s.t["add"].s(1, 1), s.lib.group(s.t["add"].s(1), s.t["add"].s(2))),
    ],
    ids=["group in a chain", "chord in a chain", "chain ending in a group"],
)
def test_nested_steps_match_celery(build: Build, sides: tuple[Side, Side]) -> None:
    """Same shape; celeriac also writes the (redundant) group id into frozen members."""
    theirs, ours = sides
    build(theirs).apply_async()
    build(ours).apply_async()
    assert _normalized(ours.sent, _strip_group_ids) == _normalized(theirs.sent, _strip_group_ids)
