"""The same tasks as ``control_app`` in a Celery project (the real ``celery`` package)."""

import os
import time

from celery import Celery

app = Celery("ctl", broker=os.environ.get("CONTROL_URL"), backend=os.environ.get("CONTROL_URL"))
if os.environ.get("CONTROL_URL", "").startswith("amqp"):
    app.conf.result_backend = "rpc://"
if os.environ.get("CONTROL_PREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["CONTROL_PREFIX"]}
    app.conf.result_backend_transport_options = {"global_keyprefix": os.environ["CONTROL_PREFIX"]}


@app.task(name="ctl.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ctl.sleep", rate_limit="100/s")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
