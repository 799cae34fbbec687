"""Which ``link_error`` callbacks are called with ``(request, exc, traceback)`` (Celery 5)."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celery, signature
from celeriac.canvas.errbacks import wants_request
from celeriac.canvas.signature import Signature


@pytest.fixture
def app() -> Celery:
    app = Celery("errbacks", broker="memory://", set_as_current=False)

    @app.task(name="old_style")
    def old_style(task_id: str) -> None: ...

    @app.task(name="new_style")
    def new_style(request: Any, exc: BaseException, traceback: str) -> None: ...

    @app.task(name="bound_new", bind=True)
    def bound_new(self: Any, request: Any, exc: BaseException, traceback: str) -> None: ...

    @app.task(name="bound_old", bind=True)
    def bound_old(self: Any, task_id: str) -> None: ...

    @app.task(name="star")
    def star(*args: Any) -> None: ...

    @app.task(name="two")
    def two(tag: str, task_id: str) -> None: ...

    return app


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda app: signature("not_registered_here"), False),
        (lambda app: app.tasks["old_style"].s(), False),
        (lambda app: app.tasks["new_style"].s(), True),
        (lambda app: app.tasks["bound_new"].s(), True),
        (lambda app: app.tasks["bound_old"].s(), False),
        (lambda app: app.tasks["star"].s(), True),
        (lambda app: app.tasks["two"].s(), True),  # two positional parameters left
        (lambda app: app.tasks["two"].s("tag"), False),  # a partial argument takes one
        (lambda app: app.tasks["two"].si("tag"), True),  # immutable: its args do not count
    ],
)
def test_calling_convention(app: Celery, make: Any, expected: bool) -> None:
    sig = make(app)
    assert isinstance(sig, Signature)
    assert wants_request(app, sig) is expected
