"""The app of the dashboard tests' worker subprocess: broker, backend, key prefix from the env."""

from __future__ import annotations

import os

from celeriac import Celery

app = Celery(
    "webw",
    broker=os.environ.get("CELERIAC_BROKER_URL", "memory://"),
    backend=os.environ.get("CELERIAC_RESULT_BACKEND") or None,
)
app.conf.task_send_sent_event = True
if os.environ.get("TEST_KEYPREFIX"):
    options = {"global_keyprefix": os.environ["TEST_KEYPREFIX"]}
    app.conf.broker_transport_options = options
    app.conf.result_backend_transport_options = options


@app.task(name="webw.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="webw.total")
def total(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(name="webw.fail")
def fail(message: str) -> None:
    raise ValueError(message)


if os.environ.get("WEB_BEAT"):  # the schedules test's beat: one entry a second
    app.conf.beat_schedule = {
        "add-every-second": {"task": "webw.add", "schedule": 1.0, "args": (1, 1)},
    }


@app.task(name="webw.sleep")
def sleep(seconds: float, **extra: object) -> str:
    import time  # noqa: PLC0415

    time.sleep(seconds)
    return "woke"
