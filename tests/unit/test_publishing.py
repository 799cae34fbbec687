"""What the publish path resolves once per task must follow every later change, and the
publish signals must still reach connected receivers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, signals
from celeriac.context import Context, request_var
from celeriac.protocol import kombu
from celeriac.protocol.message import decode_task
from celeriac.task import Task
from tests.unit import publish_cases


@pytest.fixture
def app() -> Celery:
    return Celery("pub", broker=f"memory://pub-{uuid.uuid4().hex}", set_as_current=False)


@pytest.fixture
def task(app: Celery) -> Task:
    @app.task(name="pub.task")
    def task(*args: Any) -> None:
        """A task without options."""

    return task


def _build(
    app: Celery, task: Task | None, *args: Any, name: str = "pub.task", **options: Any
) -> Any:
    return app.build_request(name, args, {}, options, task)


def test_settings_assigned_after_a_publish_apply_to_the_next(app: Celery, task: Task) -> None:
    before = _build(app, task)
    app.conf.task_default_priority = 4
    app.conf["task_time_limit"] = 5
    app.conf.update(task_ignore_result=True, task_serializer="pickle")
    after = _build(app, task)
    assert (before.message.priority, after.message.priority) == (None, 4)
    assert (before.message.time_limit, after.message.time_limit) == (None, 5)
    assert (before.message.ignore_result, after.message.ignore_result) == (False, True)
    assert (before.serializer, after.serializer) == ("json", "pickle")


def test_task_options_assigned_after_a_publish_apply_to_the_next(app: Celery, task: Task) -> None:
    assert _build(app, task).route.routing_key == "celery"
    task.queue = "elsewhere"
    task.time_limit = 5
    assert _build(app, task).route.routing_key == "elsewhere"
    assert _build(app, task).message.time_limit == 5
    task.time_limit = 5.0  # equal to 5, but written 5.0 on the wire
    assert repr(_build(app, task).message.time_limit) == "5.0"


def test_class_level_task_options_count_too(
    app: Celery, task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _build(app, task).message.priority is None
    monkeypatch.setattr(type(task), "priority", 8)  # e.g. on a custom base class
    assert _build(app, task).message.priority == 8


def test_new_routes_apply_to_the_next_publish(app: Celery, task: Task) -> None:
    assert _build(app, task).route.routing_key == "celery"
    app.config_from_object({"task_routes": {"pub.*": {"queue": "routed"}}})
    assert _build(app, task).route.routing_key == "routed"
    assert _build(app, task, queue="explicit").route.routing_key == "explicit"
    assert _build(app, task).route.routing_key == "routed"


def test_router_functions_still_see_every_publishs_arguments(app: Celery, task: Task) -> None:
    seen = []

    def by_first_argument(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> Any:
        seen.append(list(args))
        return {"queue": f"q{args[0]}"}

    app.config_from_object({"task_routes": (by_first_argument,)})
    assert [_build(app, task, n).route.routing_key for n in (1, 2, 1)] == ["q1", "q2", "q1"]
    assert seen == [[1], [2], [1]]


def test_a_task_registered_under_a_name_already_sent_gets_its_own_options(app: Celery) -> None:
    assert _build(app, None, name="later.task").route.routing_key == "celery"

    @app.task(name="later.task", queue="own")
    def later() -> None:
        """Registered after a send_task of its name."""

    assert _build(app, later, name="later.task").route.routing_key == "own"
    assert _build(app, None, name="later.task").route.routing_key == "celery"


@pytest.fixture
def recorded() -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def before(sender: Any, headers: dict[str, Any], **kwargs: Any) -> None:
        headers["x-added-by-receiver"] = "yes"  # Celery lets receivers change headers
        calls.append(("before", sender, {"headers": dict(headers), **kwargs}))

    def after(sender: Any, **kwargs: Any) -> None:
        calls.append(("after", sender, kwargs))

    signals.before_task_publish.connect(before)
    signals.after_task_publish.connect(after)
    try:
        yield calls
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
    assert not signals.before_task_publish.has_listeners()
    assert not signals.after_task_publish.has_listeners()


async def test_publish_signals_reach_connected_receivers(
    app: Celery, task: Task, recorded: list[tuple[str, str, dict[str, Any]]]
) -> None:
    requests = [_build(app, task, n, queue="sig") for n in range(2)]
    await app.apublish(requests)
    assert [(when, sender) for when, sender, _ in recorded] == [
        ("before", "pub.task"),
        ("before", "pub.task"),
        ("after", "pub.task"),
        ("after", "pub.task"),
    ]
    _, _, before = recorded[0]
    assert before["routing_key"] == "sig" and before["exchange"] == ""
    assert before["signal"] is signals.before_task_publish
    assert before["body"] == ([0], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                        "chord": None})  # fmt: skip
    # Celery's arguments: the whole headers, the properties, what to declare, the policy.
    assert before["headers"]["id"] == requests[0].message.id
    assert before["headers"]["task"] == "pub.task"
    assert before["properties"]["correlation_id"] == requests[0].message.id
    assert [q.name for q in before["declare"]] == ["sig"]
    assert before["retry_policy"] == app.conf["task_publish_retry_policy"]
    transport = await app.aget_transport()
    deliveries = await transport.fetch(["sig"], limit=10, timeout=1)
    messages = [decode_task(d.envelope, ["json"]) for d in deliveries]
    assert sorted(m.args[0] for m in messages) == [0, 1]
    assert all(m.headers == {"x-added-by-receiver": "yes"} for m in messages)
    await app.aclose()


async def test_publish_without_receivers_sends_no_signal(app: Celery, task: Task) -> None:
    assert not signals.before_task_publish.has_listeners()
    await app.apublish([_build(app, task, queue="quiet")])
    transport = await app.aget_transport()
    [delivery] = await transport.fetch(["quiet"], limit=10, timeout=1)
    assert decode_task(delivery.envelope, ["json"]).headers == {}
    await app.aclose()


def _without_ids(app: Celery, task: Task, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """Route and stored bytes of one publish, its random task id replaced."""
    request = app.build_request(task.name, args, {}, options, task)
    [out] = app._outgoing([request])
    raw = kombu.encode(out.envelope, exchange=out.exchange, routing_key=out.routing_key,
                       delivery_tag="tag")  # fmt: skip
    return request.route, out.not_before, raw.replace(request.message.id.encode(), b"<id>")


@pytest.mark.parametrize("in_task", [False, True])
@pytest.mark.parametrize("which", ["plain", "opinionated", "settings", "router-function"])
def test_a_publish_without_options_is_the_general_path_with_every_option_unset(
    which: str, in_task: bool
) -> None:
    """delay() takes a shortcut past option parsing; it must land where parsing would."""

    def by_args(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> Any:
        return {"queue": f"q{args[0]}"}

    settings: dict[str, Any] = {
        "settings": {"task_default_priority": 2, "task_time_limit": 9, "task_compression": "gzip"},
        "router-function": {"task_routes": (by_args,)},
    }.get(which, {})
    app, plain, opinionated = publish_cases._app(**settings)
    task = opinionated if which == "opinionated" else plain
    unset = {"expires": None, "queue": None, "priority": None}  # not empty: the general path
    context = Context(id="parent-id", root_id="root-id") if in_task else None
    token = request_var.set(context)
    try:
        assert _without_ids(app, task, (1, "x"), {}) == _without_ids(app, task, (1, "x"), unset)
    finally:
        request_var.reset(token)
