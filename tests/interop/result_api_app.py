"""The tasks of the result-API parity tests, written once for either library.

``build(lib)`` defines the same app on ``celery`` or ``celeriac`` (the module passed in);
``result_api_celery`` and ``result_api_celeriac`` are the two apps workers load.
"""

from __future__ import annotations

import importlib
import os
import time
from types import ModuleType
from typing import Any


def build(lib: ModuleType) -> Any:
    """The app and its tasks on ``lib`` (``celery`` or ``celeriac``)."""
    app = lib.Celery(
        "result_api",
        broker=os.environ.get("INTEROP_URL"),
        backend=os.environ.get("INTEROP_URL"),
    )
    prefix = {"global_keyprefix": os.environ.get("INTEROP_PREFIX", "")}
    app.conf.update(
        result_expires=600,
        result_extended=True,
        broker_transport_options=prefix,
        result_backend_transport_options=prefix,
    )

    @app.task(name="ra.add")
    def add(x: Any, y: Any) -> Any:
        return x + y

    @app.task(name="ra.fail")
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.task(name="ra.spawn")
    def spawn(n: int) -> str:
        for i in range(n):
            add.delay(i, i)
        return "spawned"

    @app.task(name="ra.retry_once", bind=True)
    def retry_once(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return int(self.request.retries)

    _canvas_tasks(lib, app, add)
    _abortable_tasks(lib, app)
    return app


def _canvas_tasks(lib: ModuleType, app: Any, add: Any) -> None:
    """Tasks that replace themselves or grow their chord."""

    @app.task(name="ra.replace_with", bind=True)
    def replace_with(self: Any, kind: str) -> Any:
        if kind == "task":
            return self.replace(add.si(10, 5))
        if kind == "chain":
            return self.replace(lib.chain(add.si(1, 1), add.s(3)))
        return self.replace(lib.group(add.si(1, 1), add.si(2, 2)))

    @app.task(name="ra.grow", bind=True)
    def grow(self: Any, x: int) -> int:
        self.add_to_chord(add.si(x, 100))
        return x

    @app.task(name="ra.stamps", bind=True)
    def stamps(self: Any, *args: Any) -> Any:
        return [self.request.stamps, sorted(self.request.stamped_headers or [])]

    @app.task(name="ra.identity")
    def identity(value: Any) -> Any:
        return value

    @app.task(name="ra.ordered")
    def ordered(values: list[Any]) -> list[Any]:
        return sorted(values)


def _abortable_tasks(lib: ModuleType, app: Any) -> None:
    """A task that runs until it is aborted."""
    abortable = importlib.import_module(f"{lib.__name__}.contrib.abortable")

    @app.task(name="ra.until_aborted", bind=True, base=abortable.AbortableTask)
    def until_aborted(self: Any, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.is_aborted():
                return "aborted"
            time.sleep(0.05)
        return "not aborted"
