"""The celeriac app of the remote-control tests (worker subprocesses and the CLI load it).

``CONTROL_URL`` names the broker and result store, ``CONTROL_PREFIX`` the Redis key
prefix of the test run (ignored elsewhere).
"""

import os
import time

from celeriac import Celery

app = Celery("ctl", broker=os.environ.get("CONTROL_URL"), backend=os.environ.get("CONTROL_URL"))
if os.environ.get("CONTROL_BACKEND"):  # results another process can read (not rpc://)
    app.conf.result_backend = os.environ["CONTROL_BACKEND"]
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
