"""What runs inside a pool process (or thread): look up the task, run it, report an Outcome."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

from celeriac import signals, states
from celeriac.context import Context, set_state_sink
from celeriac.trace import Outcome, run_task
from celeriac.worker.executors import POOL_NAMES
from celeriac.worker.executors.processes import send_note

__all__ = [
    "before_child",
    "bind_app",
    "child_finalizer",
    "child_initializer",
    "initializer_for",
    "run_in_child",
    "run_in_thread",
    "thread_initializer",
]

_app: Any = None
_hostname: str | None = None


def bind_app(app: Any, hostname: str | None = None) -> None:
    """Remember the worker's app and node name; forked children inherit them."""
    global _app, _hostname
    _app, _hostname = app, hostname


def before_child(pool: Any) -> None:
    """In the worker, before each pool process is forked (Celery's
    ``worker_before_create_process``, sent by the pool)."""
    signals.worker_before_create_process.send(sender=pool)


def child_finalizer(exitcode: int) -> None:
    """In a pool process about to exit (Celery's ``worker_process_shutdown``)."""
    signals.worker_process_shutdown.send(sender=_hostname, pid=os.getpid(), exitcode=exitcode)


def initializer_for(pool: str) -> Callable[[], None] | None:
    """What runs first in each pool process or thread, as Celery's pools send
    ``worker_process_init``: in every prefork child, once for ``solo``, never for threads."""
    kind = POOL_NAMES.get(pool.strip().lower())
    if kind == "processes":
        return child_initializer
    return thread_initializer if kind == "threads with one thread" else None


def child_initializer() -> None:
    """Run once in each new pool process (Celery's ``worker_process_init``).

    ``update_state`` documents then go to the worker through the pipe
    (:func:`send_note`), so the worker writes them after its own STARTED.
    """
    set_state_sink(_note_state)
    signals.worker_process_init.send(sender=_hostname)


def thread_initializer() -> None:
    """Run once in the ``solo`` pool's thread; the worker's own state sink stays in place."""
    signals.worker_process_init.send(sender=_hostname)


def _note_state(task_id: str, meta: dict[str, Any]) -> None:
    send_note((task_id, meta))


def run_in_thread(payload: tuple[str, Context]) -> Outcome:
    """Run task ``name`` with the request in ``payload``, in this process; always an Outcome."""
    name, request = payload
    return run_task(_app.tasks[name], request)


def run_in_child(payload: tuple[str, Context]) -> Outcome:
    """Like :func:`run_in_thread`, in a pool process: the Outcome must go back through a pipe."""
    name, request = payload
    outcome = run_task(_app.tasks[name], request).portable()
    try:
        pickle.dumps(outcome.value)
    except Exception as exc:  # the parent could not receive it: report why instead
        return Outcome(
            state=states.FAILURE,
            value={
                "exc_type": "EncodeError",
                "exc_message": [f"task result cannot be sent back from the pool: {exc!r}"],
                "exc_module": "celeriac.exceptions",
            },
            runtime=outcome.runtime,
            exc_repr=f"EncodeError({exc!r})",
        )
    return outcome
