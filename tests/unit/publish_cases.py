"""Publishes covering every ``apply_async`` option, and the stored bytes each one gives.

``test_publish_golden`` checks that publishing still stores exactly the bytes recorded in
``data/publish_golden.json``; ``python -m tests.unit.publish_cases`` rewrites that file
(only ever on purpose, when the wire format is meant to change).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celeriac import Celery, Queue, signature
from celeriac.context import Context, request_var
from celeriac.protocol import kombu
from celeriac.routing import Exchange
from celeriac.task import Task

__all__ = ["GOLDEN", "Case", "cases", "published"]

GOLDEN = Path(__file__).with_name("data") / "publish_golden.json"
_ORIGIN = re.compile(rb"gen\d+@[^\"]*")
_FUTURE = dt.datetime(2099, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
_PAST = dt.datetime(2001, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
Case = tuple[str, Callable[[], dict[str, Any]]]


def _app(**settings: Any) -> tuple[Celery, Task, Task]:
    app = Celery("golden", broker="memory://", set_as_current=False, **settings)

    @app.task(name="golden.plain")
    def plain(*args: Any, **kwargs: Any) -> None:
        """No options of its own."""

    @app.task(
        name="golden.opinionated",
        queue="tq",
        priority=3,
        time_limit=5,
        soft_time_limit=4,
        ignore_result=True,
        expires=_FUTURE,
        serializer="json",
    )
    def opinionated(*args: Any, **kwargs: Any) -> None:
        """Options on the decorator."""

    return app, plain, opinionated


def published(
    app: Celery, task: Task, args: Any = (), kwargs: Any = None, **options: Any
) -> dict[str, Any]:
    """Route, due time and stored bytes (fixed delivery tag, origin blanked) of one publish."""
    request = app.build_request(task.name, args, kwargs or {}, options, task)
    [out] = app._outgoing([request])
    raw = kombu.encode(
        out.envelope, exchange=out.exchange, routing_key=out.routing_key, delivery_tag="tag"
    )
    queue = request.route.queue
    return {
        "exchange": out.exchange,
        "routing_key": out.routing_key,
        "queue": queue.name if queue else None,
        "not_before": out.not_before,
        "raw": _ORIGIN.sub(b"gen@origin", raw).decode("utf-8", errors="surrogateescape"),
    }


def _sig(name: str, *args: Any) -> dict[str, Any]:
    return dict(signature(name, args=args, options={"task_id": f"id-{name}"}))


def cases() -> Iterator[Case]:
    """Every case: a name and a function returning what :func:`published` gives."""
    app, plain, opinionated = _app()
    tid = {"task_id": "11111111-2222-4333-8444-555555555555"}
    yield "no-arguments", lambda: published(app, plain, **tid)
    yield (
        "plain-arguments",
        lambda: published(
            app, plain, (1, "two", None, True, [3, {"four": 4}]), {"k": "v", "n": [1, 2]}, **tid
        ),
    )
    yield (
        "non-plain-arguments",
        lambda: published(
            app,
            plain,
            (
                1.5,
                float("inf"),
                uuid.UUID(int=7),
                _PAST,
                dt.date(2020, 1, 2),
                decimal.Decimal("1.1"),
            ),
            {"b": b"bytes", "s": {1}, "big": 2**70, "text": "é😀\u2028"},
            **tid,
        ),
    )
    yield "list-args", lambda: published(app, plain, [1, 2], None, **tid)
    yield "task-options", lambda: published(app, opinionated, (1,), **tid)
    yield (
        "task-options-overridden",
        lambda: published(
            app,
            opinionated,
            queue="oq",
            priority=9,
            time_limit=50,
            soft_time_limit=40,
            ignore_result=False,
            expires=_PAST,
            **tid,
        ),
    )
    yield (
        "every-option",
        lambda: published(
            app,
            plain,
            ("a",),
            {"b": 2},
            eta=_FUTURE,
            expires=_FUTURE.replace(tzinfo=None),
            queue="q1",
            priority=7,
            headers={"x-custom": [1, "two"], "task": "reserved: ignored", "x-n": None},
            time_limit=30,
            soft_time_limit=20.5,
            ignore_result=True,
            shadow="shadow-name",
            reply_to="reply-queue",
            root_id="root",
            parent_id="parent",
            group_id="gid",
            group_index=3,
            retries=2,
            argsrepr="ARGS",
            kwargsrepr="KWARGS",
            link=signature("golden.cb", args=(1,)),
            link_error=[signature("golden.eb")],
            chain=[_sig("golden.c2"), _sig("golden.c1")],
            chord=_sig("golden.body"),
            **tid,
        ),
    )
    yield "eta-in-the-past", lambda: published(app, plain, eta=_PAST, **tid)
    yield "eta-as-iso-string", lambda: published(app, plain, eta=_FUTURE.isoformat(), **tid)
    yield (
        "exchange-and-routing-key",
        lambda: published(app, plain, exchange="ex", routing_key="rk", **tid),
    )
    yield (
        "exchange-object",
        lambda: published(
            app, plain, exchange=Exchange("exo", type="topic"), routing_key="a.b", **tid
        ),
    )
    yield "queue-object", lambda: published(app, plain, queue=Queue("qo", routing_key="qk"), **tid)
    yield "compression", lambda: published(app, plain, (1,), compression="zlib", **tid)
    yield "pickle", lambda: published(app, plain, (1, "x"), serializer="pickle", **tid)
    yield (
        "stamps-options",
        lambda: published(
            app, plain, stamped_headers=["s"], stamps={"s": 1}, replaced_task_nesting=1, **tid
        ),
    )
    yield "in-a-running-task", lambda: _in_task(lambda: published(app, plain, **tid))
    yield "in-an-eager-task", lambda: _in_task(lambda: published(app, plain, **tid), eager=True)

    routed, rplain, ropinionated = _app(
        task_routes=[{"golden.opin*": {"queue": "routed-glob"}}, {"golden.plain": "routed"}],
        task_default_priority=1,
        task_time_limit=60,
        task_soft_time_limit=50,
        task_ignore_result=True,
        task_compression="gzip",
        task_default_queue="dq",
    )
    yield "settings-and-routes", lambda: published(routed, rplain, (1,), **tid)
    yield "settings-and-glob-route", lambda: published(routed, ropinionated, **tid)
    yield "routes-then-option", lambda: published(routed, rplain, queue="explicit", **tid)

    def by_args(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> Any:
        return {"queue": f"q{args[0]}"} if args else None

    fn_app, fn_plain, _ = _app(
        task_routes=(by_args,),
        task_queues=[Queue("q1", Exchange("topic-ex", type="topic"), routing_key="q1.#")],
    )
    yield "router-function-1", lambda: published(fn_app, fn_plain, (1,), **tid)
    yield "router-function-2", lambda: published(fn_app, fn_plain, (2,), **tid)
    yield "router-function-none", lambda: published(fn_app, fn_plain, **tid)

    # broker_delayed_delivery: the same bytes, but due in the broker's delayed store.
    parked, pplain, _ = _app(broker_delayed_delivery=True)
    yield "eta-delayed-delivery", lambda: published(parked, pplain, eta=_FUTURE, **tid)


def _in_task(publish: Callable[[], dict[str, Any]], eager: bool = False) -> dict[str, Any]:
    token = request_var.set(Context(id="parent-id", root_id="root-id", is_eager=eager))
    try:
        return publish()
    finally:
        request_var.reset(token)


def main() -> None:
    """Rewrite the golden file from the current code."""
    data = {name: make() for name, make in cases()}
    GOLDEN.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {len(data)} cases to {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    main()
