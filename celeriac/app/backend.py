"""``app.backend``: the result store's operations that projects call, from sync code.

Celery's ``app.backend`` is the backend object itself; celeriac's result stores are
asynchronous and kept per event loop, so this view runs each call on the app's portal
loop. Reading (``get_task_meta``, ``get_state``, ``get_result``, ``get_traceback``),
writing (``store_result``, ``mark_as_*``) and ``forget`` are here; the raw client and the
key-value calls (``client``, ``get``, ``set``, ``delete``) are not: they raise
NotImplementedError naming what to use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.app.connection import not_offered
from celeriac.exceptions import TaskRevokedError
from celeriac.protocol.results import exception_to_dict, make_meta

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["BackendView"]

_RAW = frozenset({"client", "get", "set", "delete", "mget", "incr", "expire", "cleanup"})


class BackendView:
    """Sync access to the app's result store (``app.backend``)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    @property
    def url(self) -> str | None:
        """The result backend URL."""
        return self._app.result_backend_url

    # reading ----------------------------------------------------------------------------
    def get_task_meta(self, task_id: str, cache: bool = True) -> dict[str, Any]:
        """The result document of ``task_id`` (a PENDING one when nothing is stored)."""
        meta: dict[str, Any] = self._app.run_sync(self._app.AsyncResult(task_id).ameta())
        return meta

    def get_state(self, task_id: str) -> str:
        """The state of ``task_id``."""
        return self._app.AsyncResult(task_id).state

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        """The result of ``task_id``: its value, its exception, or its progress meta."""
        return self._app.AsyncResult(task_id).result

    def get_traceback(self, task_id: str) -> str | None:
        """The formatted traceback of a failed task."""
        return self._app.AsyncResult(task_id).traceback

    # writing ----------------------------------------------------------------------------
    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **_: Any,
    ) -> Any:
        """Write a result document (an exception is stored as Celery stores one)."""
        value = exception_to_dict(result) if isinstance(result, BaseException) else result
        meta = make_meta(task_id, state, value, traceback=traceback)

        async def store() -> None:
            backend = await self._app.aget_backend()
            await backend.store([(task_id, meta)])

        self._app.run_sync(store())
        return result

    def mark_as_started(self, task_id: str, **meta: Any) -> Any:
        """Record STARTED with ``meta`` as its info."""
        return self.store_result(task_id, meta, states.STARTED)

    def mark_as_done(self, task_id: str, result: Any, *args: Any, **kwargs: Any) -> Any:
        """Record SUCCESS with ``result``."""
        return self.store_result(task_id, result, states.SUCCESS)

    def mark_as_failure(
        self, task_id: str, exc: BaseException, traceback: str | None = None, *a: Any, **k: Any
    ) -> Any:
        """Record FAILURE with the exception ``exc``."""
        return self.store_result(task_id, exc, states.FAILURE, traceback)

    def mark_as_retry(
        self, task_id: str, exc: BaseException, traceback: str | None = None, *a: Any, **k: Any
    ) -> Any:
        """Record RETRY with the exception ``exc``."""
        return self.store_result(task_id, exc, states.RETRY, traceback)

    def mark_as_revoked(self, task_id: str, reason: str = "", *args: Any, **kwargs: Any) -> Any:
        """Record REVOKED (a TaskRevokedError with ``reason``)."""
        return self.store_result(task_id, TaskRevokedError(reason), states.REVOKED)

    def forget(self, task_id: str) -> None:
        """Delete the result of ``task_id``."""

        async def forget() -> None:
            backend = await self._app.aget_backend()
            await backend.forget([task_id])

        self._app.run_sync(forget())

    def __getattr__(self, name: str) -> Any:
        raise not_offered(
            self,
            name,
            _RAW,
            "celeriac's result stores have no raw client or key-value calls;"
            " use get_task_meta/store_result/forget or AsyncResult",
        )

    def __repr__(self) -> str:
        return f"<BackendView: {self.url}>"
