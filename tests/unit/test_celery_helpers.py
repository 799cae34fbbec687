"""The small helpers under Celery's names give what Celery's own give."""

from __future__ import annotations

import itertools
from typing import Any

import celery.schedules
import celery.states
import celery.utils
import celery.utils.log
import pytest

import celeriac.schedules
import celeriac.states
import celeriac.utils
import celeriac.utils.log
from celeriac import Celery
from celeriac.exceptions import Reject, Retry, TaskPredicate
from celeriac.local import PromiseProxy, Proxy, maybe_evaluate
from celeriac.utils.einfo import ExceptionInfo


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_chunks(n: int) -> None:
    items = list(range(7))
    assert list(celeriac.utils.chunks(iter(items), n)) == list(celery.utils.chunks(iter(items), n))


@pytest.mark.parametrize("name", ["w1@host", "host", "a@b@c", "@x"])
def test_nodenames(name: str) -> None:
    assert tuple(celeriac.utils.nodesplit(name)) == tuple(celery.utils.nodesplit(name))
    assert celeriac.utils.nodename("w1", "h") == celery.utils.nodename("w1", "h")


@pytest.mark.parametrize(
    ("main", "module"), [("proj", "__main__"), ("proj", "x.tasks"), (None, None)]
)
def test_gen_task_name(main: str | None, module: str | None) -> None:
    app = Celery(main, broker="memory://", set_as_current=False)
    ours = celeriac.utils.gen_task_name(app, "add", module)
    assert ours == celery.utils.gen_task_name(app, "add", module)


def test_class_names_and_lookups() -> None:
    assert celeriac.utils.get_full_cls_name(ValueError) == celery.utils.get_full_cls_name(
        ValueError
    )
    assert celeriac.utils.get_cls_by_name(
        "collections:OrderedDict"
    ) is celery.utils.get_cls_by_name("collections:OrderedDict")
    assert celeriac.utils.instantiate("collections.OrderedDict", a=1) == {"a": 1}


@pytest.mark.parametrize("level", ["info", "WARNING", 10, "critical"])
def test_log_levels(level: Any) -> None:
    assert celeriac.utils.log.mlevel(level) == celery.utils.log.mlevel(level)
    assert celeriac.utils.LOG_LEVELS[20] == celery.utils.LOG_LEVELS[20]


NAMES = ["PENDING", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "PROGRESS", "RECEIVED"]


@pytest.mark.parametrize(("a", "b"), list(itertools.product(NAMES, NAMES)))
def test_state_ordering(a: str, b: str) -> None:
    ours, theirs = celeriac.states.state, celery.states.state
    assert (ours(a) < ours(b), ours(a) >= ours(b)) == (
        theirs(a) < theirs(b),
        theirs(a) >= theirs(b),
    )


@pytest.mark.parametrize(("spec", "top"), [("*/15", 60), ("1-5", 24), ("0,30", 60), ("*", 7)])
def test_crontab_parser(spec: str, top: int) -> None:
    ours = celeriac.schedules.crontab_parser(top).parse(spec)
    assert ours == celery.schedules.crontab_parser(top).parse(spec)


def test_a_bad_crontab_field_raises_parse_exception() -> None:
    with pytest.raises(celeriac.schedules.ParseException):
        celeriac.schedules.crontab(minute="61")
    with pytest.raises(ValueError):  # and a ValueError, as before
        celeriac.schedules.crontab_parser(60).parse("x")


def test_predicates() -> None:
    assert issubclass(Retry, TaskPredicate) and issubclass(Reject, TaskPredicate)


def test_exception_info_surface() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        einfo = ExceptionInfo()
        assert einfo.exception is exc and einfo.type is KeyError
        assert einfo.exc_info == (KeyError, exc, exc.__traceback__)
    assert "KeyError: 'missing'" in str(einfo) and str(einfo) == einfo.traceback
    with pytest.raises(ValueError, match="exc_info"):
        ExceptionInfo()


def test_proxies() -> None:
    calls: list[int] = []

    def make() -> list[int]:
        calls.append(1)
        return [1, 2, 3]

    lazy = Proxy(make)
    assert len(lazy) == 3 and lazy[0] == 1 and 2 in lazy and len(calls) == 3  # each use
    promise = PromiseProxy(make)
    assert not promise.__evaluated__()
    assert maybe_evaluate(promise) == [1, 2, 3] and promise[1] == 2
    assert promise.__evaluated__() and len(calls) == 4  # once
