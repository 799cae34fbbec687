"""The same tasks on celeriac: only the import line differs."""

import os

from celeriac import Celery

app = Celery(
    "interop",
    broker=os.environ.get("INTEROP_URL"),
    backend=os.environ.get("INTEROP_BACKEND") or os.environ.get("INTEROP_URL"),
)
app.conf.result_expires = 600
# The tests share a Redis server with others: every key goes under the test run's prefix.
PREFIX = {"global_keyprefix": os.environ.get("INTEROP_PREFIX", "")}
app.conf.broker_transport_options = PREFIX
app.conf.result_backend_transport_options = PREFIX


@app.task(name="interop.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="interop.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="interop.whoami")
def whoami() -> str:
    return "celeriac"
