"""Handles on task results: ``AsyncResult``, ``GroupResult`` and ``EagerResult``.

Every blocking call has an ``a``-prefixed async twin (``get``/``aget``). Waiting
uses the backend's notifications (or a backing-off poll), never a spinning loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac import _state, states
from celeriac.context import current_request
from celeriac.exceptions import TaskRevokedError, TimeoutError
from celeriac.protocol.results import exception_from_dict

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.trace import Outcome

__all__ = ["AsyncResult", "EagerResult", "GroupResult", "ResultSet"]


def _assert_not_in_task() -> None:
    req = current_request()
    if req is not None and not req.is_eager and not req.called_directly:
        raise RuntimeError(
            "Never call result.get() within a task: it can deadlock the worker. "
            "Use a chain or a chord, or pass disable_sync_subtasks=False."
        )


class AsyncResult:
    """The state and result of one task, read from the result backend."""

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: Celery | None = None,
        parent: AsyncResult | None = None,
    ) -> None:
        self.id = id
        self.task_name = task_name
        self.app: Celery = app if app is not None else _state.get_current_app()
        self.parent = parent
        self._meta: dict[str, Any] | None = None

    @property
    def task_id(self) -> str:
        """Alias of ``id``."""
        return self.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    # reading state ----------------------------------------------------------------------
    async def ameta(self) -> dict[str, Any]:
        """The stored document ({'status': 'PENDING'} when nothing is stored)."""
        if self._meta is not None:
            return self._meta
        backend = await self.app.aget_backend()
        meta = (await backend.get([self.id]))[0] or {
            "status": states.PENDING,
            "result": None,
            "task_id": self.id,
        }
        if meta.get("status") in states.READY_STATES:
            self._meta = meta  # final: never changes again
        return meta

    def _get_meta(self) -> dict[str, Any]:
        if self._meta is not None:
            return self._meta
        meta: dict[str, Any] = self.app.run_sync(self.ameta())
        return meta

    @property
    def state(self) -> str:
        """PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED or a custom state."""
        return str(self._get_meta().get("status", states.PENDING))

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception (failure), or the progress meta of a custom state."""
        return _decode_result(self._get_meta())

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failure."""
        value = self._get_meta().get("traceback")
        return str(value) if value is not None else None

    @property
    def date_done(self) -> dt.datetime | None:
        """When the task finished (UTC)."""
        value = self._get_meta().get("date_done")
        if not value:
            return None
        parsed = dt.datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    @property
    def children(self) -> list[Any]:
        """Results of tasks this task published (raw tuples)."""
        return list(self._get_meta().get("children") or [])

    def ready(self) -> bool:
        """True once the task succeeded, failed or was revoked."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """True if the task succeeded."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """True if the task failed."""
        return self.state == states.FAILURE

    # waiting ----------------------------------------------------------------------------
    async def aget(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **_: Any,
    ) -> Any:
        """Wait for the result; re-raise the task's exception when ``propagate``."""
        if self._meta is None:
            backend = await self.app.aget_backend()
            meta = await backend.wait(self.id, timeout)
            if meta is None or meta.get("status") not in states.READY_STATES:
                raise TimeoutError(
                    f"task {self.id} not ready after {timeout} s "
                    f"(state {(meta or {}).get('status', 'PENDING')})"
                )
            self._meta = meta
        return _outcome(self._meta, propagate)

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Block until the result is ready (or ``timeout`` s) and return it."""
        if disable_sync_subtasks:
            _assert_not_in_task()
        return self.app.run_sync(
            self.aget(timeout, propagate, interval, disable_sync_subtasks=False)
        )

    wait = get

    # changing state ---------------------------------------------------------------------
    async def aforget(self) -> None:
        """Delete the stored result."""
        backend = await self.app.aget_backend()
        await backend.forget([self.id])
        self._meta = None

    def forget(self) -> None:
        """Delete the stored result."""
        self.app.run_sync(self.aforget())

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: Any = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke the task: workers skip it (the revoke is persisted)."""
        self.app.revoke(self.id, terminate=terminate, signal=signal)

    async def arevoke(self) -> None:
        """Async twin of ``revoke``."""
        await self.app.arevoke(self.id)

    def as_tuple(self) -> list[Any]:
        """Celery's serialized form: ``[[id, parent], None]``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], None]


def _decode_result(meta: dict[str, Any]) -> Any:
    status = meta.get("status")
    value = meta.get("result")
    if status in states.EXCEPTION_STATES and isinstance(value, dict) and "exc_type" in value:
        return exception_from_dict(value)
    return value


def _outcome(meta: dict[str, Any], propagate: bool) -> Any:
    status = meta.get("status")
    value = _decode_result(meta)
    if propagate and status in states.PROPAGATE_STATES:
        if status == states.REVOKED and not isinstance(value, BaseException):
            raise TaskRevokedError(f"task {meta.get('task_id')} was revoked")
        if isinstance(value, BaseException):
            raise value
    return value


class EagerResult(AsyncResult):
    """The result of ``Task.apply``: already known, nothing stored."""

    def __init__(
        self, id: str, outcome: Outcome, app: Celery | None = None, propagate: bool = False
    ) -> None:
        super().__init__(id, app=app)
        self.outcome = outcome
        if outcome.state == states.FAILURE and propagate and outcome.exception is not None:
            raise outcome.exception
        self._meta = {
            "status": outcome.state,
            "result": outcome.value,
            "traceback": outcome.traceback,
            "task_id": id,
            "date_done": dt.datetime.now(dt.UTC).isoformat(),
        }

    @property
    def result(self) -> Any:
        """The return value, or the original exception object."""
        if self.outcome.exception is not None and self.outcome.state == states.FAILURE:
            return self.outcome.exception
        return super().result

    info = result

    async def aget(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **_: Any,
    ) -> Any:
        """The value, or raise the original exception."""
        if (
            propagate
            and self.outcome.state == states.FAILURE
            and self.outcome.exception is not None
        ):
            raise self.outcome.exception
        return _outcome(self._meta or {}, propagate)

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **kwargs: Any,
    ) -> Any:
        """The value, or raise the original exception."""
        if (
            propagate
            and self.outcome.state == states.FAILURE
            and self.outcome.exception is not None
        ):
            raise self.outcome.exception
        return _outcome(self._meta or {}, propagate)

    def forget(self) -> None:
        """Nothing is stored for eager results."""


class ResultSet:
    """A list of results handled together."""

    def __init__(self, results: Sequence[AsyncResult], app: Celery | None = None) -> None:
        self.results = list(results)
        self.app: Celery = app if app is not None else _state.get_current_app()

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    async def ametas(self) -> list[dict[str, Any]]:
        """All documents in one backend round trip."""
        backend = await self.app.aget_backend()
        found = await backend.get([r.id for r in self.results])
        return [meta or {"status": states.PENDING} for meta in found]

    def _states(self) -> list[str]:
        metas: list[dict[str, Any]] = self.app.run_sync(self.ametas())
        return [str(m.get("status")) for m in metas]

    def ready(self) -> bool:
        """True when every result is ready."""
        return all(s in states.READY_STATES for s in self._states())

    def successful(self) -> bool:
        """True when every task succeeded."""
        return all(s == states.SUCCESS for s in self._states())

    def failed(self) -> bool:
        """True when any task failed."""
        return any(s == states.FAILURE for s in self._states())

    def completed_count(self) -> int:
        """How many tasks succeeded."""
        return sum(1 for s in self._states() if s == states.SUCCESS)

    async def ajoin(
        self, timeout: float | None = None, propagate: bool = True, **_: Any
    ) -> list[Any]:
        """Wait for all results, in order."""
        return [await r.aget(timeout=timeout, propagate=propagate) for r in self.results]

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        disable_sync_subtasks: bool = True,
        **kwargs: Any,
    ) -> list[Any]:
        """Wait for all results, in order."""
        if disable_sync_subtasks:
            _assert_not_in_task()
        values: list[Any] = self.app.run_sync(self.ajoin(timeout, propagate))
        return values

    get = join

    async def aget(
        self, timeout: float | None = None, propagate: bool = True, **kwargs: Any
    ) -> list[Any]:
        """Async twin of ``get``."""
        return await self.ajoin(timeout, propagate)

    def forget(self) -> None:
        """Delete every stored result."""
        for result in self.results:
            result.forget()

    def revoke(self, **kwargs: Any) -> None:
        """Revoke every task."""
        self.app.revoke([r.id for r in self.results])


class GroupResult(ResultSet):
    """The results of a group, addressable by the group id."""

    def __init__(
        self,
        id: str | None = None,
        results: Sequence[AsyncResult] | None = None,
        app: Celery | None = None,
        parent: AsyncResult | None = None,
    ) -> None:
        super().__init__(results or [], app=app)
        self.id = id
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    async def asave(self) -> GroupResult:
        """Store the member ids so ``restore`` can find them by group id."""
        backend = await self.app.aget_backend()
        await backend.save_group(str(self.id), [r.id for r in self.results])
        return self

    def save(self) -> GroupResult:
        """Store the member ids so ``restore`` can find them by group id."""
        self.app.run_sync(self.asave())
        return self

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: Celery | None = None) -> GroupResult | None:
        """Load a saved group, or None."""
        the_app: Celery = app if app is not None else _state.get_current_app()

        async def load() -> list[str] | None:
            store = await the_app.aget_backend()
            return await store.restore_group(id)

        ids: list[str] | None = the_app.run_sync(load())
        if ids is None:
            return None
        return cls(id, [AsyncResult(i, app=the_app) for i in ids], app=the_app)

    def delete(self) -> None:
        """Forget the saved group."""

        async def drop() -> None:
            store = await self.app.aget_backend()
            await store.forget_group(str(self.id))

        self.app.run_sync(drop())

    def as_tuple(self) -> list[Any]:
        """Celery's serialized form of a group result."""
        return [[self.id, None], [r.as_tuple() for r in self.results]]
