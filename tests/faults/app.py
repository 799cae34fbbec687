"""The app the fault tests' worker processes run: every execution is recorded in a file.

Configured from the environment (set by :mod:`tests.faults.harness`): ``FAULT_BROKER``,
``FAULT_BACKEND``, ``FAULT_LEASE`` (seconds), ``FAULT_RECORD`` (the file). ``record``
appends ``start <id> <pid> <time>`` before its work and ``end <id> <pid> <time>`` after
it, each one ``write`` of a short line to a file opened with O_APPEND, so lines of
concurrent processes never mix.
"""

from __future__ import annotations

import os
import time

from celeriac import Celery

app = Celery("faults")
app.conf.broker_url = os.environ.get("FAULT_BROKER", "memory://")
app.conf.result_backend = os.environ.get("FAULT_BACKEND") or None
app.conf.broker_transport_options = {
    "lease_timeout": float(os.environ.get("FAULT_LEASE", "30")),
    **({"global_keyprefix": os.environ["FAULT_PREFIX"]} if os.environ.get("FAULT_PREFIX") else {}),
}
app.conf.worker_prefetch_multiplier = int(os.environ.get("FAULT_PREFETCH", "4"))
if os.environ.get("FAULT_RETRY_ON_STARTUP"):
    app.conf.broker_connection_retry_on_startup = os.environ["FAULT_RETRY_ON_STARTUP"] == "1"
if os.environ.get("FAULT_MAX_RETRIES"):
    app.conf.broker_connection_max_retries = int(os.environ["FAULT_MAX_RETRIES"])
if os.environ.get("FAULT_BEAT_EVERY"):
    # beat's one entry: a task every FAULT_BEAT_EVERY seconds (the tests read the messages)
    app.conf.beat_schedule = {
        "tick": {
            "task": "tests.faults.app.record",
            "schedule": float(os.environ["FAULT_BEAT_EVERY"]),
            "args": [-1, 0],
        }
    }
RECORD = os.environ.get("FAULT_RECORD", os.devnull)


def note(line: str) -> None:
    """Append one line to the record file (atomic for short lines with O_APPEND)."""
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


@app.task(acks_late=True)
def record(n: int, seconds: float = 0.01) -> int:
    """Note the start and the end of this execution; return ``n``."""
    note(f"start {n} {os.getpid()} {time.time():.4f}")
    if seconds:
        time.sleep(seconds)
    note(f"end {n} {os.getpid()} {time.time():.4f}")
    return n
