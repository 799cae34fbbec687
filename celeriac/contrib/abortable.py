"""Tasks that can be asked to stop: Celery's ``celery.contrib.abortable``.

A client calls ``result.abort()``, which stores the state ``ABORTED`` for the task; the
task checks ``self.is_aborted()`` now and then and returns early when it is set. Nothing
interrupts the task: stopping is up to its body. As in Celery, the state is kept in the
result backend (so a backend is needed), and the task's own final state replaces it when
the task returns.

::

    @app.task(bind=True, base=AbortableTask)
    def long_job(self):
        for item in work():
            if self.is_aborted():
                return "aborted"
            handle(item)

    result = long_job.delay()
    result.abort()
"""

from __future__ import annotations

from typing import Any

from celeriac._portal import sync_twin
from celeriac.protocol.results import make_meta
from celeriac.result import AsyncResult
from celeriac.task import Task

__all__ = ["ABORTED", "AbortableAsyncResult", "AbortableTask"]

ABORTED = "ABORTED"
"""The state ``abort()`` stores (not a ready state: ``get()`` keeps waiting)."""


class AbortableAsyncResult(AsyncResult):
    """An AsyncResult that can ask its task to stop."""

    def is_aborted(self) -> bool:
        """True once ``abort()`` was called (and the task has not finished since)."""
        return self.state == ABORTED

    async def aabort(self) -> None:
        """Store the ABORTED state; the task sees it at its next ``is_aborted()``."""
        backend = await self.app.aget_backend()
        await backend.store([(self.id, make_meta(self.id, ABORTED, None))])
        self._meta = None

    abort = sync_twin(aabort)


class AbortableTask(Task):
    """A task whose body can check ``self.is_aborted()``; its results are abortable."""

    abstract = True

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AbortableAsyncResult:
        """An :class:`AbortableAsyncResult` for ``task_id``."""
        return AbortableAsyncResult(task_id, app=self.app, task_name=self.name, **kwargs)

    def is_aborted(self, **kwargs: Any) -> bool:
        """Whether the running task (or ``task_id=``) was asked to stop."""
        task_id: Any = kwargs.get("task_id", self.request.id)
        # Outside a task there is no id: AsyncResult raises ValueError, as in Celery.
        return self.AsyncResult(task_id).is_aborted()
