"""Canvas API details that need no worker, run the same way on Celery and on celeriac.

Each scenario builds an eager app with the ``celery`` package and one with celeriac, runs
the same calls on both and compares what they returned or raised.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("celery")

Scenario = Callable[[Any, Any], Any]


_made = itertools.count()


def _eager_app(kind: str) -> tuple[Any, Any]:
    """An eager app of ``kind`` whose tasks are named ``p.<name>`` in ``app.tasks``."""
    lib = importlib.import_module(kind)
    # Celery keeps task names across apps: a fresh prefix per app keeps them apart.
    prefix = f"p{next(_made)}"
    app = lib.Celery(f"parity_{kind}", broker="memory://", backend="cache+memory://")
    if kind == "celeriac":
        app.conf.result_backend = "memory://"
    app.conf.task_always_eager = True

    @app.task(name=f"{prefix}.add")
    def add(x: Any, y: Any) -> Any:
        return x + y

    @app.task(name=f"{prefix}.fail")
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.task(name=f"{prefix}.replace_with", bind=True)
    def replace_with(self: Any, kind: str) -> Any:
        if kind == "task":
            return self.replace(add.si(10, 5))
        return self.replace(lib.chain(add.si(1, 1), add.s(3)))

    for name in ("add", "fail", "replace_with"):
        app.tasks[f"p.{name}"] = app.tasks[f"{prefix}.{name}"]
    return lib, app


def _on_both(scenario: Scenario) -> Any:
    seen = [scenario(*_eager_app(kind)) for kind in ("celery", "celeriac")]
    assert seen[1] == seen[0]
    return seen[0]


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call()`` returned, or the type and text of what it raised."""
    try:
        return call()
    except Exception as exc:
        return (type(exc).__name__, str(exc))


SKEWS = [
    {},
    {"start": 1, "stop": 10},
    {"start": 0, "step": 2},
    {"start": 1, "stop": 2.5, "step": 1},
    {"start": 5, "stop": 3},
    {"start": 0, "stop": 0},
]


@pytest.mark.parametrize("options", SKEWS)
def test_group_skew(options: dict[str, float]) -> None:
    def scenario(lib: Any, app: Any) -> Any:
        add = app.tasks["p.add"]
        skewed = lib.group(add.s(i, i) for i in range(4)).skew(**options)
        return [task.options["countdown"] for task in skewed.tasks]

    assert len(_on_both(scenario)) == 4


def test_signature_replace() -> None:
    def scenario(lib: Any, app: Any) -> Any:
        sig = app.tasks["p.add"].s(1, 2, countdown=3)
        return [
            (list(s.args), dict(s.kwargs), dict(s.options))
            for s in (
                sig.replace(args=(5,)),
                sig.replace(kwargs={"y": 1}),
                sig.replace(options={"queue": "q"}),
                sig,
            )
        ]

    seen = _on_both(scenario)
    assert seen[2] == ([1, 2], {"countdown": 3}, {"queue": "q"})


def test_failing_chord_header_raises_the_original_exception_eagerly() -> None:
    def scenario(lib: Any, app: Any) -> Any:
        add, fail = app.tasks["p.add"], app.tasks["p.fail"]
        header = [add.s(1, 1), fail.si("boom")]
        return [
            _outcome(lambda: lib.chord(header, add.s([0])).apply_async().get()),
            _outcome(lambda: lib.chord(header, add.s([0])).apply().get()),
            _outcome(lambda: lib.chord([add.s(1, 1)], add.s([0])).apply().get()),
        ]

    assert _on_both(scenario)[0] == ("ValueError", "boom")


def test_replace_eagerly() -> None:
    """The same, but for one deliberate difference: under ``task_always_eager``, Celery
    5.7's ``delay()`` of a task that replaces itself by a plain task raises RuntimeError
    (its ``sig.apply().get()`` trips its own "never call get() within a task" check)
    where ``apply()`` of the same task works; celeriac returns the value either way."""

    def scenario(lib: Any, app: Any) -> Any:
        replace_with, add = app.tasks["p.replace_with"], app.tasks["p.add"]
        return [
            _outcome(lambda: replace_with.apply(("task",)).get()),
            _outcome(lambda: replace_with.delay("task").get()),
            _outcome(lambda: replace_with.apply(("chain",)).get()),
            _outcome(lambda: lib.chain(replace_with.si("task"), add.s(1)).apply_async().get()),
        ]

    celery_saw, celeriac_saw = (scenario(*_eager_app(kind)) for kind in ("celery", "celeriac"))
    assert celery_saw[1][0] == "RuntimeError"
    assert celeriac_saw[1] == 15
    assert celeriac_saw[:1] + celeriac_saw[2:] == celery_saw[:1] + celery_saw[2:] == [15, 5, 16]


def test_add_to_chord_outside_a_chord() -> None:
    def scenario(lib: Any, app: Any) -> Any:
        add = app.tasks["p.add"]
        return _outcome(lambda: add.add_to_chord(add.si(1, 1)))

    assert _on_both(scenario) == ("ValueError", "Current task is not member of any chord")


def test_eager_result_fields() -> None:
    def scenario(lib: Any, app: Any) -> Any:
        result = app.tasks["p.add"].apply((1, 2))
        fields = ("args", "kwargs", "worker", "queue", "retries", "children")
        return [result.name.rpartition(".")[2], *(getattr(result, f) for f in fields)]

    assert _on_both(scenario)[0] == "add"


def test_app_signature_binds_the_app_and_runs() -> None:
    """``app.signature(name, args, kwargs, **options)``, and from a wire dict."""

    def scenario(lib: Any, app: Any) -> Any:
        sig = app.signature("p.add", (2, 3), {}, countdown=1)
        wire = app.signature({"task": "p.add", "args": [4], "kwargs": {"y": 5}, "options": {}})
        fields = (sig["task"], list(sig["args"]), sig["kwargs"], sig["options"])
        return fields, sig.apply_async().get(), wire.delay().get()

    assert _on_both(scenario) == (("p.add", [2, 3], {}, {"countdown": 1}), 5, 9)
