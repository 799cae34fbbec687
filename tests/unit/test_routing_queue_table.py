"""The queue table a worker consumes, as Celery's ``app.amqp.queues`` selects it."""

from __future__ import annotations

from celeriac import Celery
from celeriac.routing import Queue


def test_exclude_queues_as_celery_deselects() -> None:
    app = Celery("x", broker="memory://", set_as_current=False)
    app.conf.task_queues = [Queue("a"), Queue("b"), Queue("c")]
    names = [spec.name for spec in app.router.consume_specs(None, ["b"])]
    assert names == ["a", "c"]
    assert [spec.name for spec in app.router.consume_specs(["a", "b"], ["a"])] == ["b"]


def test_queues_made_on_demand_are_not_consumed_by_default() -> None:
    app = Celery("x", broker="memory://", set_as_current=False)
    app.conf.task_queues = [Queue("a")]
    app.router.route("t", (), {}, {"queue": "made-later"})
    assert [spec.name for spec in app.router.consume_specs(None)] == ["a"]
