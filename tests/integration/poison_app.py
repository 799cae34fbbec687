"""The app of the poison-message tests: one task that records each run in a file.

Worker subprocesses import it with ``-A tests.integration.poison_app``; the broker URL, the
key prefix and the record file come from the environment (see ``configure``).
"""

from __future__ import annotations

import os
from pathlib import Path

from celeriac import Celery

MAX_SIZE = 1_000_000
"""task_message_max_size of these tests (bytes): small, so a bomb needs no big buffers."""

app = Celery("poison")


def configure(target: Celery, prefix: str) -> None:
    """The settings worker and test client share: short leases, a prefix, a size limit."""
    target.conf.task_message_max_size = MAX_SIZE
    options: dict[str, object] = {"lease_timeout": 3}
    if str(target.conf.broker_url).startswith("amqp"):
        options["dead_letter_queue"] = f"dead.{prefix}"  # this test's own, in a shared vhost
    else:
        options["global_keyprefix"] = prefix
    target.conf.broker_transport_options = options


configure(app, os.environ.get("TEST_KEYPREFIX", ""))


@app.task
def record(label: str) -> str:
    """Append ``label`` to the record file: each line is one execution."""
    with Path(os.environ["POISON_RECORD"]).open("a") as out:
        out.write(label + "\n")
    return label
