"""The sync-only app of the prefetch window tests (worker subprocesses load it).

``WINDOW_URL`` names the Redis broker and result store, ``WINDOW_PREFIX`` the test run's
key prefix. No ``async def`` task: the window is the sync tasks' alone.
"""

import os
import time
from typing import Any

from celeriac import Celery

app = Celery("win", broker=os.environ.get("WINDOW_URL"), backend=os.environ.get("WINDOW_URL"))
if os.environ.get("WINDOW_PREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["WINDOW_PREFIX"]}
    app.conf.result_backend_transport_options = {"global_keyprefix": os.environ["WINDOW_PREFIX"]}


@app.task(name="win.noop", ignore_result=True)
def noop() -> None:
    """A no-op: the shortest task there is."""


@app.task(name="win.slow", bind=True)
def slow(self: Any, seconds: float) -> str:
    """Sleep, then say which worker ran it."""
    time.sleep(seconds)
    return str(self.request.hostname)
