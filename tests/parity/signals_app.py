"""The app both sides of the signal parity test run: Celery's when ``PARITY_KIND=celery``,
celeriac's otherwise. Every signal gets a receiver that appends one JSON line to
``PARITY_LOG``: the process id, the signal's name and the names of its arguments
(except the signals named in ``PARITY_SKIP``)."""

from __future__ import annotations

import json
import os
from typing import Any

if os.environ.get("PARITY_KIND") == "celery":
    from celery import Celery, signals
    from celery.utils.dispatch import Signal
else:
    from celeriac import Celery, signals  # type: ignore[assignment]
    from celeriac.signals import Signal  # type: ignore[assignment]

URL = os.environ.get("PARITY_URL", "redis://127.0.0.1:6379/0")
PREFIX = {"global_keyprefix": os.environ.get("PARITY_PREFIX", "parity:")}

app = Celery("signals_app", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=os.environ.get("PARITY_QUEUE", "parity"),
    broker_transport_options=PREFIX,
    result_backend_transport_options=PREFIX,
    worker_prefetch_multiplier=1,
)


def _record(name: str) -> Any:
    def receiver(sender: Any = None, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        line = json.dumps({"pid": os.getpid(), "name": name, "args": sorted(kwargs)})
        with open(os.environ["PARITY_LOG"], "a", encoding="utf-8") as log:
            log.write(line + "\n")

    return receiver


_SKIP = set(os.environ.get("PARITY_SKIP", "").split(","))
for _name, _value in sorted(vars(signals).items()):
    if isinstance(_value, Signal) and _name not in _SKIP:
        _value.connect(_record(_name), weak=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail() -> None:
    raise ValueError("expected")
