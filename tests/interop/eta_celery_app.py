"""A Celery project whose task says when it ran (real ``celery`` package), for the ETA tests.

``ETA_BROKER`` names the broker (Redis or RabbitMQ); results always go to the Redis of
``ETA_BACKEND``; ``ETA_PREFIX`` is the test run's Redis key prefix.
"""

import os
import time

from celery import Celery

app = Celery("eta", broker=os.environ.get("ETA_BROKER"), backend=os.environ.get("ETA_BACKEND"))
PREFIX = {"global_keyprefix": os.environ.get("ETA_PREFIX", "")}
app.conf.broker_transport_options = PREFIX
app.conf.result_backend_transport_options = PREFIX
app.conf.result_expires = 600


@app.task(name="eta.clock")
def clock() -> float:
    return time.time()
