"""Handles on task results: ``AsyncResult``, ``GroupResult`` and ``EagerResult``.

Every blocking call is derived from its ``a``-prefixed async twin (``get`` from
``aget``, by :func:`~celeriac._portal.sync_twin`). Waiting uses the backend's
notifications (or a backing-off poll), never a spinning loop. ``AsyncResult.get()``
waits in the calling thread where the backend offers a
:class:`~celeriac.backends.base.BlockingWaiter` (Redis), instead of handing the wait
to the portal's loop and blocking on its answer (two thread switches per call).
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import functools
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from celeriac import _state, states
from celeriac._portal import get_portal, sync_twin
from celeriac.backends import BlockingWaiter, blocking_waiter_from_url
from celeriac.backends.base import Unavailable
from celeriac.context import current_request
from celeriac.engines.options import backend_options
from celeriac.exceptions import IncompleteStream, TaskRevokedError, TimeoutError
from celeriac.protocol.results import exception_from_dict
from celeriac.utils.graph import DependencyGraph, GraphFormatter

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.trace import Outcome

__all__ = [
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "WAIT_GRACE",
    "ResultSet",
    "bound_group_result",
    "close_blocking_waiter",
    "result_from_tuple",
]

WAIT_GRACE = 0.05
"""Seconds past its timeout a wait may take to give its last answer (a final read)."""


def _assert_not_in_task() -> None:
    req = current_request()
    if req is not None and not req.is_eager and not req.called_directly:
        raise RuntimeError(
            "Never call result.get() within a task: it can deadlock the worker. "
            "Use a chain or a chord, or pass disable_sync_subtasks=False."
        )


R = TypeVar("R", default=Any)
"""What the task returns: ``AsyncResult[int]`` for ``add.delay(1, 2)``; a bare
``AsyncResult`` is ``AsyncResult[Any]``."""


class AsyncResult(Generic[R]):
    """The state and result of one task, read from the result backend."""

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: Celery | None = None,
        parent: AsyncResult | None = None,
    ) -> None:
        if id is None:
            raise ValueError(f"AsyncResult requires valid id, not {type(id)}")
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
    def children(self) -> list[AsyncResult | GroupResult] | None:
        """Results of the tasks this task published (chain steps, callbacks, groups), as
        AsyncResult/GroupResult; None while nothing is stored (as Celery)."""
        found = self._get_meta().get("children")
        if found is None:
            return None
        return [result_from_tuple(child, self.app) for child in found]

    # result_extended fields: None unless the worker stored them.
    @property
    def name(self) -> str | None:
        """The task's name (``result_extended``)."""
        return self._get_meta().get("name")

    @property
    def args(self) -> Any:
        """The task's positional arguments (``result_extended``)."""
        return self._get_meta().get("args")

    @property
    def kwargs(self) -> Any:
        """The task's keyword arguments (``result_extended``)."""
        return self._get_meta().get("kwargs")

    @property
    def worker(self) -> str | None:
        """The host name of the worker that ran the task (``result_extended``)."""
        return self._get_meta().get("worker")

    @property
    def retries(self) -> int | None:
        """How many times the task was retried (``result_extended``)."""
        return self._get_meta().get("retries")

    @property
    def queue(self) -> str | None:
        """The routing key the task was delivered with (``result_extended``)."""
        return self._get_meta().get("queue")

    async def aexists(self) -> bool:
        """True if the backend holds a document for this task (a PENDING task that was
        never sent, or whose result was forgotten or expired, has none)."""
        if self._meta is not None and not isinstance(self, EagerResult):
            return True
        backend = await self.app.aget_backend()
        return (await backend.get([self.id]))[0] is not None

    exists = sync_twin(aexists)

    # the result graph -------------------------------------------------------------------
    def _parents(self) -> Iterator[Any]:
        node = self.parent
        while node:
            yield node
            node = node.parent

    def iterdeps(self, intermediate: bool = False) -> Iterator[tuple[Any, Any]]:
        """``(parent, result)`` pairs of this result and its children, breadth first.

        A result that is not ready ends the walk with IncompleteStream, unless
        ``intermediate`` (then its children are not followed)."""
        stack: deque[tuple[Any, Any]] = deque([(None, self)])
        while stack:
            parent, node = stack.popleft()
            yield parent, node
            if node.ready():
                stack.extend((node, child) for child in node.children or [])
            elif not intermediate:
                raise IncompleteStream(f"result {node.id} is not ready")

    def collect(self, intermediate: bool = False, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        """``(result, value)`` for this result and every result below it (its children,
        theirs ...), waiting for each as ``get(**kwargs)`` does."""
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**kwargs)

    def get_leaf(self) -> Any:
        """The value of the last result ``iterdeps`` reaches."""
        value = None
        for _, node in self.iterdeps():
            value = node.get()
        return value

    def build_graph(self, intermediate: bool = False, formatter: Any = None) -> DependencyGraph:
        """The graph of this result and its descendants (an edge from each to its children)."""
        graph = DependencyGraph(formatter=formatter or GraphFormatter(root=self.id, shape="oval"))
        for parent, node in self.iterdeps(intermediate=intermediate):
            graph.add_arc(node)
            if parent:
                graph.add_edge(parent, node)
        return graph

    @functools.cached_property
    def graph(self) -> DependencyGraph:
        """``build_graph()``, computed once."""
        return self.build_graph()

    def then(
        self,
        callback: Callable[[Any], Any],
        on_error: Callable[[BaseException], Any] | None = None,
        weak: bool = False,
    ) -> Future[Any]:
        """Call ``callback(result)`` once this result is ready (in celeriac's background
        thread); an exception it raises goes to ``on_error``. Returns a Future of its value."""
        return _call_when_ready(self, callback, on_error)

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> Any:
        """Raise the task's exception if it failed (when ``propagate``); else its value."""
        meta = self._get_meta()
        value = _outcome(meta, propagate)
        if callback is not None:
            callback(self.id, value)
        return value

    maybe_reraise = maybe_throw

    def as_list(self) -> list[str]:
        """This task's id and its parents' ids."""
        return [self.id, *(self.parent.as_list() if self.parent is not None else [])]

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
    ) -> R:
        """Wait until the result is ready (or ``timeout`` s: TimeoutError) and return it;
        re-raise the task's exception when ``propagate``."""
        if self._meta is None:
            self._accept(await self._await_document(timeout), timeout)
        if self._parent_may_raise(propagate):
            await self._araise_failed_parent()
        return self._final(propagate)

    def _parent_may_raise(self, propagate: bool) -> bool:
        """Whether a failure should first look for a failed parent (chain step, chord
        header): Celery's ``get`` re-raises the first failure from the root down."""
        meta = self._meta or {}
        return (
            propagate and self.parent is not None and meta.get("status") in states.PROPAGATE_STATES
        )

    async def _araise_failed_parent(self) -> None:
        for node in reversed(list(self._parents())):
            await node._amaybe_throw()

    async def _amaybe_throw(self, propagate: bool = True) -> Any:
        """``maybe_throw`` from async code."""
        return _outcome(await self.ameta(), propagate)

    async def _await_document(self, timeout: float | None) -> dict[str, Any] | None:
        """The backend's wait, bounded by ``timeout`` even while the store cannot be reached
        (its connection retries would outlast it): None when the time is up."""
        if timeout is None:
            return await (await self.app.aget_backend()).wait(self.id, None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline + WAIT_GRACE):
                backend = await self.app.aget_backend()
                return await backend.wait(self.id, max(0.0, deadline - loop.time()))
        except builtins.TimeoutError:
            return None

    def _get_here(
        self, *, timeout: float | None, propagate: bool, disable_sync_subtasks: bool, **_: Any
    ) -> R:
        """It refuses to wait inside a task (unless ``disable_sync_subtasks=False``) and
        waits in the calling thread where the backend can (Redis), else on the portal."""
        if disable_sync_subtasks:
            _assert_not_in_task()
        if self._meta is None:
            timeout = self._wait_here(timeout)
        if self._meta is None:
            value: R = self.app.run_sync(self.aget(timeout, propagate))
            return value
        if self._parent_may_raise(propagate):
            self.app.run_sync(self._araise_failed_parent())
        return self._final(propagate)

    get = sync_twin(aget, here=_get_here)

    def _wait_here(self, timeout: float | None) -> float | None:
        """Wait in this thread if the backend can; return the timeout left for the portal."""
        waiter = _blocking_waiter(self.app)
        if waiter is None:
            return timeout
        try:
            meta = waiter.wait(self.id, timeout)
        except Unavailable as exc:
            return exc.left
        self._accept(meta, timeout)
        return timeout

    def _accept(self, meta: dict[str, Any] | None, timeout: float | None) -> None:
        """Keep ``meta`` if it is final; raise TimeoutError otherwise."""
        if meta is None or meta.get("status") not in states.READY_STATES:
            raise TimeoutError(
                f"task {self.id} not ready after {timeout} s "
                f"(state {(meta or {}).get('status', 'PENDING')})"
            )
        self._meta = meta

    def _final(self, propagate: bool) -> R:
        """The value of the stored final document (raised when it is an exception)."""
        value: R = _outcome(self._meta or {}, propagate)
        return value

    wait = get

    # changing state ---------------------------------------------------------------------
    async def aforget(self) -> None:
        """Delete the stored result."""
        backend = await self.app.aget_backend()
        await backend.forget([self.id])
        self._meta = None

    forget = sync_twin(aforget)

    async def arevoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: Any = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke the task: workers skip it (the revoke is persisted)."""
        await self.app.arevoke(self.id, terminate=terminate, signal=signal)

    revoke = sync_twin(arevoke)

    def as_tuple(self) -> list[Any]:
        """Celery's serialized form: ``[[id, parent], None]``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], None]


_CODEC_SETTINGS = (
    "result_serializer",
    "result_compression",
    "result_accept_content",
    "accept_content",
)
_blocking_lock = threading.Lock()
_blocking: weakref.WeakKeyDictionary[Celery, tuple[tuple[Any, ...], BlockingWaiter | None]] = (
    weakref.WeakKeyDictionary()
)


def _blocking_waiter(app: Celery) -> BlockingWaiter | None:
    """The calling-thread waiter of ``app``'s result backend (per process and settings)."""
    url = app.result_backend_url
    options = backend_options(app.conf, url, app.broker_url) if url else {}
    codec = [app.conf[name] for name in _CODEC_SETTINGS]
    key = (url, repr(options), repr(codec), os.getpid())
    found = _blocking.get(app)
    if found is not None and found[0] == key:
        return found[1]
    with _blocking_lock:
        found = _blocking.get(app)
        if found is None or found[0] != key:
            close_blocking_waiter(app)
            waiter = None
            if url is not None:
                waiter = blocking_waiter_from_url(
                    url, serializer=app.result_codec(url), options=options
                )
            found = _blocking[app] = (key, waiter)
        return found[1]


def close_blocking_waiter(app: Celery) -> None:
    """Close the calling-thread waiter of ``app`` (if this process opened one)."""
    found = _blocking.pop(app, None)
    if found is not None and found[1] is not None and found[0][-1] == os.getpid():
        found[1].close()


def result_from_tuple(value: Any, app: Celery | None = None) -> Any:
    """An AsyncResult or GroupResult from Celery's serialized form (``as_tuple()``, e.g.
    the ``children`` of a result document); a result object is returned as it is."""
    if isinstance(value, AsyncResult | ResultSet):
        return value
    the_app = app if app is not None else _state.get_current_app()
    head, members = value
    task_id, parent = head if isinstance(head, list | tuple) else (head, None)
    parent_result = result_from_tuple(parent, the_app) if parent else None
    if members is not None:
        results = [result_from_tuple(member, the_app) for member in members]
        return the_app.GroupResult(task_id, results, parent=parent_result)
    return the_app.AsyncResult(task_id, parent=parent_result)


def _call_when_ready(
    result: Any, callback: Callable[[Any], Any], on_error: Callable[[BaseException], Any] | None
) -> Future[Any]:
    """Run ``callback(result)`` on the portal once ``result`` is ready (Celery's
    ``result.then``); ``on_error(exc)`` gets what the callback raised."""

    async def when_ready() -> Any:
        await result.aget(propagate=False, disable_sync_subtasks=False)
        try:
            return callback(result)
        except Exception as exc:
            if on_error is None:
                raise
            return on_error(exc)

    return get_portal().submit(when_ready())


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


class EagerResult(AsyncResult[R]):
    """The result of ``Task.apply``: already known, nothing stored."""

    def __init__(
        self,
        id: str,
        outcome: Outcome,
        app: Celery | None = None,
        propagate: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(id, app=app, task_name=name)
        self.outcome = outcome
        if outcome.state == states.FAILURE and propagate and outcome.exception is not None:
            raise outcome.exception
        self._meta = {
            "status": outcome.state,
            "result": outcome.value,
            "traceback": outcome.traceback,
            "task_id": id,
            "date_done": dt.datetime.now(dt.UTC).isoformat(),
            "name": name,
        }

    @property
    def result(self) -> Any:
        """The return value, or the original exception object."""
        if self.outcome.exception is not None and self.outcome.state == states.FAILURE:
            return self.outcome.exception
        return super().result

    info = result

    def _final(self, propagate: bool) -> R:
        """The value, or raise the original exception (not one rebuilt from its document)."""
        if (
            propagate
            and self.outcome.state == states.FAILURE
            and self.outcome.exception is not None
        ):
            raise self.outcome.exception
        return super()._final(propagate)

    def _get_here(self, *, propagate: bool, **_: Any) -> R:
        """Known already: ``get`` waits for nothing, so a task may call it too."""
        return self._final(propagate)

    def forget(self) -> None:
        """Nothing is stored for eager results."""


class ResultSet:
    """A list of results handled together (members may be GroupResults themselves)."""

    def __init__(
        self, results: Sequence[AsyncResult | ResultSet], app: Celery | None = None
    ) -> None:
        self.results: list[Any] = list(results)
        self.app: Celery = app if app is not None else _state.get_current_app()

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    def add(self, result: AsyncResult | ResultSet) -> None:
        """Add a result unless it is already a member."""
        if result not in self.results:
            self.results.append(result)

    def update(self, results: Sequence[AsyncResult | ResultSet]) -> None:
        """Add several results."""
        for result in results:
            self.add(result)

    def discard(self, result: AsyncResult | ResultSet) -> None:
        """Remove a result if it is a member."""
        if result in self.results:
            self.results.remove(result)

    def clear(self) -> None:
        """Remove every member."""
        self.results.clear()

    def leaves(self) -> list[AsyncResult]:
        """Every task result, nested group results flattened, in order."""
        out: list[AsyncResult] = []
        for result in self.results:
            out += result.leaves() if isinstance(result, ResultSet) else [result]
        return out

    # state -----------------------------------------------------------------------------
    async def ametas(self) -> list[dict[str, Any]]:
        """The documents of all leaves, in one backend round trip (eager ones locally)."""
        leaves = self.leaves()
        # Final documents never change: use the cached ones (eager results have no other).
        ids = [r.id for r in leaves if r._meta is None]
        found: dict[str, dict[str, Any] | None] = {}
        if ids:
            backend = await self.app.aget_backend()
            found = dict(zip(ids, await backend.get(ids), strict=True))
        pending = {"status": states.PENDING}
        return [r._meta or found.get(r.id) or {**pending, "task_id": r.id} for r in leaves]

    async def astates(self) -> list[str]:
        """The state of every leaf."""
        return [str(m.get("status")) for m in await self.ametas()]

    def _states(self) -> list[str]:
        found: list[str] = self.app.run_sync(self.astates())
        return found

    async def aready(self) -> bool:
        """True when every task finished (succeeded, failed or was revoked)."""
        return all(s in states.READY_STATES for s in await self.astates())

    ready = sync_twin(aready)

    def successful(self) -> bool:
        """True when every task succeeded."""
        return all(s == states.SUCCESS for s in self._states())

    def failed(self) -> bool:
        """True when any task failed."""
        return any(s == states.FAILURE for s in self._states())

    def waiting(self) -> bool:
        """True while any task is not finished."""
        return not self.ready()

    async def acompleted_count(self) -> int:
        """How many tasks succeeded."""
        return sum(1 for s in await self.astates() if s == states.SUCCESS)

    completed_count = sync_twin(acompleted_count)

    # waiting ---------------------------------------------------------------------------
    async def ajoin(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Any = None,
        disable_sync_subtasks: bool = True,
        **_: Any,
    ) -> list[Any]:
        """Wait for all results; values in member order (the task's exception if one failed).
        ``timeout`` bounds the whole wait; ``callback(task_id, value)`` is called per member."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        values = []
        for result in self.results:
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            values.append(await result.aget(timeout=left, propagate=propagate))
        self._report(values, callback)
        return values

    def _join_here(
        self,
        *,
        timeout: float | None,
        propagate: bool,
        callback: Any,
        disable_sync_subtasks: bool,
        **_: Any,
    ) -> list[Any]:
        """It refuses to wait inside a task (unless ``disable_sync_subtasks=False``) and
        calls ``callback`` in the calling thread."""
        if disable_sync_subtasks:
            _assert_not_in_task()
        values: list[Any] = self.app.run_sync(self.ajoin(timeout, propagate))
        self._report(values, callback)
        return values

    def _report(self, values: list[Any], callback: Any) -> None:
        if callback is not None:
            for result, value in zip(self.results, values, strict=True):
                callback(result.id, value)

    join = sync_twin(ajoin, here=_join_here)
    aget = ajoin
    get = join
    join_native = join

    def supports_native_join(self) -> bool:
        """Celery API: joins are always efficient here."""
        return True

    def then(
        self,
        callback: Callable[[Any], Any],
        on_error: Callable[[BaseException], Any] | None = None,
        weak: bool = False,
    ) -> Future[Any]:
        """Call ``callback(self)`` once every member is ready (see ``AsyncResult.then``)."""
        return _call_when_ready(self, callback, on_error)

    async def _amaybe_throw(self, propagate: bool = True) -> list[Any]:
        """Raise the first failed member's exception (member order); else the values."""
        return [_outcome(meta, propagate) for meta in await self.ametas()]

    def maybe_throw(self, callback: Any = None, propagate: bool = True) -> None:
        """Raise the first failed member's exception, as Celery's ``ResultSet.maybe_throw``."""
        values = self.app.run_sync(self._amaybe_throw(propagate))
        if callback is not None:
            for result, value in zip(self.leaves(), values, strict=True):
                callback(result.id, value)

    # changing state --------------------------------------------------------------------
    async def aforget(self) -> None:
        """Delete every stored result."""
        stored = [r for r in self.leaves() if not isinstance(r, EagerResult)]
        backend = await self.app.aget_backend()
        await backend.forget([r.id for r in stored])
        for result in stored:
            result._meta = None

    forget = sync_twin(aforget)

    async def arevoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: Any = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke every task (persisted: workers skip them, now or later)."""
        ids = [r.id for r in self.leaves()]
        await self.app.arevoke(ids, terminate=terminate, signal=signal)

    revoke = sync_twin(arevoke)


class GroupResult(ResultSet):
    """The results of a group, in group order, addressable by the group id."""

    bound_app: Celery | None = None
    """The app of a class made by :func:`bound_group_result`."""

    def __init__(
        self,
        id: str | None = None,
        results: Sequence[AsyncResult | ResultSet] | None = None,
        app: Celery | None = None,
        parent: Any = None,
    ) -> None:
        super().__init__(results or [], app=app or self.bound_app)
        self.id = id
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(str(r.id) for r in self.results)}]>"

    def __str__(self) -> str:
        return str(self.id)

    def __bool__(self) -> bool:
        return bool(self.id or self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[Any]:
        """The member results (Celery's name)."""
        return self.results

    async def asave(self) -> GroupResult:
        """Store the member ids so ``restore`` finds them by group id (Celery's
        ``celery-taskset-meta-<gid>`` on Redis, a group row on SQLite)."""
        backend = await self.app.aget_backend()
        await backend.save_group(str(self.id), [str(r.id) for r in self.results])
        return self

    save = sync_twin(asave)

    @classmethod
    async def arestore(
        cls, id: str, backend: Any = None, app: Celery | None = None
    ) -> GroupResult | None:
        """Load a saved group, or None."""
        the_app = cls._app_of(app)
        ids = await (await the_app.aget_backend()).restore_group(id)
        if ids is None:
            return None
        return cls(id, [AsyncResult(i, app=the_app) for i in ids], app=the_app)

    @classmethod
    def _app_of(cls, app: Celery | None = None) -> Celery:
        """``app``, else the app this class is bound to, else the current app."""
        found: Celery = app or cls.bound_app or _state.get_current_app()
        return found

    # Through the bound (or current) app's run_sync: one portal serves every app anyway.
    restore = classmethod(sync_twin(arestore, via=lambda cls: cls._app_of()))

    async def adelete(self) -> None:
        """Delete the saved group (the results stay)."""
        await (await self.app.aget_backend()).forget_group(str(self.id))

    delete = sync_twin(adelete)

    async def aforget(self) -> None:
        """Delete every member's result and the saved group."""
        await super().aforget()
        await self.adelete()

    def as_tuple(self) -> list[Any]:
        """Celery's serialized form: ``[[gid, parent], [member tuples]]``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], [r.as_tuple() for r in self.results]]


def bound_group_result(app: Celery) -> type[GroupResult]:
    """A GroupResult class bound to ``app``, for ``app.GroupResult(gid, results)`` and
    ``app.GroupResult.restore(gid)`` (Celery's app-bound class)."""
    return type("GroupResult", (GroupResult,), {"bound_app": app, "__module__": __name__})
