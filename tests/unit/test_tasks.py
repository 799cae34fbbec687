"""The task decorator, options, eager execution and results."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from celeriac import Celery, Task, shared_task, states
from celeriac.exceptions import (
    MaxRetriesExceededError,
    NotRegistered,
    RemoteError,
    SerializationError,
)
from celeriac.protocol.results import exception_from_dict, exception_to_dict
from celeriac.trace import body_of


@pytest.fixture
def app() -> Celery:
    return Celery("tasks", broker="memory://unit", task_always_eager=True)


def test_decorator_forms_and_names(app: Celery) -> None:
    @app.task
    def plain(x: int) -> int:
        return x

    @app.task(name="custom.name", bind=True)
    def bound(self: object, x: int) -> object:
        return self

    assert plain.name == f"{__name__}.plain"
    assert bound.name == "custom.name"
    assert app.tasks["custom.name"] is bound
    assert plain(3) == 3  # calling runs the body here
    assert bound(1) is bound


def test_an_option_close_to_a_known_one_is_kept_with_a_warning(app: Celery) -> None:
    with pytest.warns(UserWarning, match="'max_retry'.*did you mean 'max_retries'"):

        @app.task(max_retry=3)
        def oops() -> None: ...

    assert oops.max_retry == 3  # kept as an attribute, as Celery keeps it


def test_eager_goes_through_serialization(app: Celery) -> None:
    @app.task
    def echo(value: object) -> object:
        return value

    assert echo.delay((1, 2)).get() == [1, 2]  # a tuple comes back as a list, as JSON does
    with pytest.raises(SerializationError, match="positional argument 0"):
        echo.delay(object())


def test_eager_retry_then_success(app: Celery) -> None:
    calls = []

    @app.task(bind=True, max_retries=5)
    def flaky(self: object) -> int:
        calls.append(self.request.retries)  # type: ignore[attr-defined]
        if len(calls) < 3:
            raise self.retry(countdown=10)  # type: ignore[attr-defined]
        return len(calls)

    assert flaky.delay().get() == 3
    assert calls == [0, 1, 2]


def test_eager_retries_exhausted(app: Celery) -> None:
    @app.task(bind=True, max_retries=1)
    def always(self: object) -> None:
        raise self.retry(countdown=0)  # type: ignore[attr-defined]

    result = always.apply()
    assert result.state == states.FAILURE
    assert isinstance(result.result, MaxRetriesExceededError)


def test_autoretry_for(app: Celery) -> None:
    attempts = []

    @app.task(autoretry_for=(ConnectionError,), max_retries=2, retry_backoff=True)
    def connect() -> None:
        attempts.append(1)
        raise ConnectionError("down")

    result = connect.apply()
    assert len(attempts) == 3
    assert result.state == states.FAILURE
    with pytest.raises(ConnectionError, match="down"):
        result.get()


def test_request_context(app: Celery) -> None:
    @app.task(bind=True)
    def whoami(self: object) -> dict[str, object]:
        req = self.request  # type: ignore[attr-defined]
        return {"id": req.id, "args": req.args, "retries": req.retries, "eager": req.is_eager}

    result = whoami.apply(task_id="fixed-id")
    assert result.get() == {"id": "fixed-id", "args": [], "retries": 0, "eager": True}


def test_shared_task_joins_every_app() -> None:
    @shared_task
    def shared_add(x: int, y: int) -> int:
        return x + y

    first = Celery("one", broker="memory://", task_always_eager=True)
    assert shared_add.name in first.tasks
    assert shared_add.delay(1, 2).get() == 3


def test_exception_round_trip() -> None:
    exc = exception_from_dict(exception_to_dict(ValueError("boom")))
    assert isinstance(exc, ValueError) and exc.args == ("boom",)
    remote = exception_from_dict(
        {"exc_type": "Nope", "exc_module": "no.such.module", "exc_message": ["x"]}
    )
    assert isinstance(remote, RemoteError)
    assert "no.such.module.Nope: x" in str(remote)


def test_unregistered_name_suggests(app: Celery) -> None:
    @app.task(name="tasks.add")
    def add() -> None: ...

    with pytest.raises(NotRegistered, match=r"did you mean tasks\.add"):
        app.get_task("tasks.ad")


def test_any_option_becomes_a_task_attribute_and_functions_become_methods(app: Celery) -> None:
    def handler(self: object, *args: object) -> object:
        return self

    @app.task(my_flag=1, on_failure=handler, acks_on_failure=False)
    def flagged() -> None: ...

    assert flagged.my_flag == 1 and flagged.acks_on_failure is False
    assert flagged.on_failure(ValueError(), "id", (), {}, None) is flagged  # bound, as Celery


def test_an_option_celeriac_does_not_implement_gets_a_warning(app: Celery) -> None:
    with pytest.warns(UserWarning, match="'Request' has no effect"):

        @app.task(Request="proj.requests:Custom")
        def custom() -> None: ...


def test_task_classes_are_made_per_task(app: Celery) -> None:
    @app.task(max_retries=1)
    def one() -> None: ...

    @app.task
    def two() -> None: ...

    assert type(one) is not type(two) and one.max_retries == 1 and two.max_retries == 3
    assert type(one).__name__ == "one" and one.__doc__ is None


def test_a_run_goes_through_call_only_when_the_class_overrides_it(app: Celery) -> None:
    calls: list[str] = []

    class Wrapping(app.Task):  # type: ignore[misc, name-defined]
        @functools.wraps(Task.__call__)  # a wrapper that copies the base method's attributes
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(self.name)
            return super().__call__(*args, **kwargs)

    @app.task(base=Wrapping, name="t.wrapped")
    def wrapped() -> int:
        return 1

    @app.task(name="t.plain")
    def plain() -> int:
        return 2

    assert body_of(wrapped) == wrapped and body_of(plain) == plain.run
    assert wrapped.apply().get() == 1 and plain.apply().get() == 2
    assert calls == ["t.wrapped"]
