"""The app of the event tests' worker subprocesses: broker and key prefix from the environment."""

from __future__ import annotations

import os

from celeriac import Celery

app = Celery("evt", broker=os.environ.get("CELERIAC_BROKER_URL", "memory://"))
app.conf.task_send_sent_event = True
if os.environ.get("TEST_KEYPREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["TEST_KEYPREFIX"]}


@app.task(name="evt.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="evt.fail")
def fail(message: str) -> None:
    raise ValueError(message)
