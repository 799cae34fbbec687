"""Sync methods derived from their async twins (``celeriac._portal.sync_twin``).

The package's pairs have one signature and one docstring; the mechanism passes the
call through unchanged (defaults, keywords, extra keywords), raises what the async
method raised, runs a subclass's override, and keeps the fast paths; a sync wait
inside a task is still refused where it was.
"""

from __future__ import annotations

import asyncio
import inspect
import pydoc
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from celeriac import Celery, chain, chord, group, states
from celeriac._portal import get_portal, sync_twin
from celeriac.canvas.signature import Signature
from celeriac.result import AsyncResult, EagerResult, GroupResult, ResultSet
from celeriac.task import Task
from celeriac.worker.worker import Worker, WorkerOptions

WAIT = 20  # generous bound for "it happened"

OWNERS: tuple[type, ...] = (AsyncResult, EagerResult, ResultSet, GroupResult, Task, Signature)
OWNERS += (chain, group, chord, Celery)

# Every sync method that is derived from its async twin, by the class that derives it.
DERIVED = {
    AsyncResult: {"get", "forget", "revoke"},
    ResultSet: {"ready", "completed_count", "join", "forget", "revoke"},
    GroupResult: {"save", "restore", "delete"},
    Task: {"apply_async"},
    Signature: {"apply_async"},
    Celery: {"publish", "send_task", "send_many", "revoke"},
}


def pairs(cls: type) -> list[str]:
    """The names ``x`` of ``cls`` that have an async twin ``ax``."""
    found = []
    for name, value in inspect.getmembers(cls):
        twin = getattr(cls, f"a{name}", None)
        if callable(value) and not name.startswith("_") and inspect.iscoroutinefunction(twin):
            found.append(name)
    return found


@pytest.mark.parametrize("cls", OWNERS, ids=lambda c: c.__name__)
def test_every_pair_has_one_signature(cls: type) -> None:
    names = pairs(cls)
    assert names, f"{cls.__name__} has no sync/async pairs"
    for name in names:
        sync, asyn = getattr(cls, name), getattr(cls, f"a{name}")
        assert inspect.signature(sync) == inspect.signature(asyn), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("cls", list(DERIVED), ids=lambda c: c.__name__)
def test_derived_twins_carry_the_async_name_and_docs(cls: type) -> None:
    for name in DERIVED[cls]:
        sync: Any = inspect.unwrap(cls.__dict__[name], stop=lambda f: hasattr(f, "__signature__"))
        asyn: Any = inspect.unwrap(cls.__dict__[f"a{name}"])
        assert sync.__wrapped__ is asyn
        assert (sync.__name__, sync.__qualname__) == (name, f"{cls.__name__}.{name}")
        assert sync.__doc__.startswith(inspect.cleandoc(asyn.__doc__))
        assert f"Blocking twin of ``a{name}``." in sync.__doc__
        assert not inspect.iscoroutinefunction(sync)
    shown = pydoc.plain(pydoc.render_doc(AsyncResult.get))
    assert "get(self, timeout: 'float | None' = None, propagate: 'bool' = True," in shown


# --- the mechanism, on a class of its own -------------------------------------------------------
class Boom(Exception):
    pass


class Portal:
    """An app's ``run_sync``: the real portal, counting the hops."""

    def __init__(self) -> None:
        self.hops = 0

    def run_sync(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        self.hops += 1
        return get_portal().run(coro, timeout)


class Owner:
    """Twins of every shape."""

    def __init__(self, app: Portal | None = None) -> None:
        self.app = app or Portal()
        self.raised: BaseException | None = None

    async def afetch(
        self, key: str, timeout: float = 1.5, *, strict: bool = False, **extra: Any
    ) -> Any:
        """Fetch ``key``."""
        await asyncio.sleep(0)
        if key == "boom":
            self.raised = Boom(key)
            raise self.raised
        return {"key": key, "timeout": timeout, "strict": strict, "extra": extra}

    fetch = sync_twin(afetch)

    async def alook(self, key: str, deep: bool = True, **extra: Any) -> Any:
        """Look ``key`` up."""
        return ("portal", key, deep, extra)

    def _look_here(self, *, key: str, deep: bool, **extra: Any) -> Any:
        """Keys starting with ``here`` are answered in the calling thread."""
        if key.startswith("here"):
            return ("here", key, deep, extra)
        return self.app.run_sync(self.alook(key, deep, **extra))

    look = sync_twin(alook, here=_look_here)

    @classmethod
    async def amake(cls, name: str = "made") -> tuple[str, str]:
        """Make one."""
        return (cls.__name__, name)

    make = classmethod(sync_twin(amake, via=lambda cls: Portal()))


class Child(Owner):
    async def afetch(
        self, key: str, timeout: float = 1.5, *, strict: bool = False, **extra: Any
    ) -> Any:
        """Fetch ``key``, the child's way."""
        return "child"

    def _look_here(self, *, key: str, deep: bool, **extra: Any) -> Any:
        return "child here"


def test_defaults_keywords_and_extra_keywords_pass_through() -> None:
    owner = Owner()
    assert owner.fetch("k") == {"key": "k", "timeout": 1.5, "strict": False, "extra": {}}
    assert owner.fetch("k", 3, strict=True, colour="red") == {
        "key": "k",
        "timeout": 3,
        "strict": True,
        "extra": {"colour": "red"},
    }
    assert owner.fetch(key="k", timeout=2)["timeout"] == 2
    assert owner.app.hops == 3
    assert inspect.signature(Owner.fetch) == inspect.signature(Owner.afetch)
    assert inspect.signature(owner.fetch) == inspect.signature(owner.afetch)


def test_a_wrong_call_fails_in_the_calling_thread_as_python_says() -> None:
    owner = Owner()
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'key'"):
        owner.fetch()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'key'"):
        owner.look("a", key="b")  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional arguments"):
        owner.look("a", True, "surplus")  # type: ignore[call-arg]
    assert owner.app.hops == 0


def test_exceptions_propagate_as_raised() -> None:
    owner = Owner()
    with pytest.raises(Boom) as caught:
        owner.fetch("boom")
    assert caught.value is owner.raised


def test_a_fast_path_receives_the_call_by_name() -> None:
    owner = Owner()
    assert owner.look("here-1") == ("here", "here-1", True, {})
    assert owner.look("here-2", False, shade="dark") == ("here", "here-2", False, {"shade": "dark"})
    assert owner.app.hops == 0
    assert owner.look("far", deep=False) == ("portal", "far", False, {})
    assert owner.app.hops == 1


def test_overrides_in_a_subclass_are_what_runs() -> None:
    child = Child()
    assert child.fetch("k") == "child"
    assert child.look("far") == "child here"


def test_classmethod_twin() -> None:
    assert Owner.make() == ("Owner", "made")
    assert Child.make("x") == ("Child", "x")
    assert Child().make() == ("Child", "made")


async def test_sync_call_from_a_running_loop_blocks_it_and_answers() -> None:
    owner = Owner()
    assert owner.fetch("k")["key"] == "k"
    assert owner.app.hops == 1


def test_sync_call_from_the_portal_thread_is_refused() -> None:
    owner = Owner()

    async def nested() -> Any:
        return owner.fetch("k")

    with pytest.raises(RuntimeError, match="portal's own thread"):
        get_portal().run(nested())


def test_twins_are_checked_when_the_class_is_made() -> None:
    def plain(self: Any) -> None: ...

    async def named_badly(self: Any) -> None: ...

    async def alist(self: Any, *items: Any) -> None: ...

    async def aread(self: Any, key: str, deep: bool = True) -> None: ...

    def reads_other(self: Any, *, key: str, colour: str, **_: Any) -> None: ...

    def reads_some(self: Any, *, key: str) -> None: ...

    def reads_all(self: Any, *, key: str, deep: bool) -> None: ...

    with pytest.raises(TypeError, match="async method named a<name>"):
        sync_twin(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async method named a<name>"):
        sync_twin(named_badly)
    with pytest.raises(TypeError, match="arguments that have names"):
        sync_twin(alist, here=reads_all)
    with pytest.raises(TypeError, match=r"reads \['colour'\]"):
        sync_twin(aread, here=reads_other)
    with pytest.raises(TypeError, match=r"must take \*\*_"):
        sync_twin(aread, here=reads_some)
    assert sync_twin(aread, here=reads_all).__name__ == "read"


# --- the package's fast paths --------------------------------------------------------------------
def refuse(coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
    coro.close()
    raise AssertionError("hopped to the portal")


def test_eager_results_answer_here_and_raise_the_original_exception() -> None:
    app = Celery("twins-eager", broker="memory://twins-eager", task_always_eager=True)
    error = ValueError("original")

    @app.task
    def fail() -> None:
        raise error

    result = fail.delay()
    assert isinstance(result, EagerResult)
    app.run_sync = refuse  # type: ignore[method-assign]
    with pytest.raises(ValueError) as caught:
        result.get()
    assert caught.value is error
    assert isinstance(result.get(propagate=False), ValueError)
    assert result.state == states.FAILURE


async def test_async_join_calls_back_per_member_in_order() -> None:
    app = Celery("twins-join", broker="memory://twins-join", task_always_eager=True)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    results = ResultSet([double.delay(i) for i in range(3)], app=app)
    seen: list[tuple[str, int]] = []
    assert await results.ajoin(callback=lambda tid, value: seen.append((tid, value))) == [0, 2, 4]
    assert seen == [(r.id, 2 * i) for i, r in enumerate(results)]
    seen.clear()
    joined = await asyncio.to_thread(results.join, None, True, 0.5, lambda *a: seen.append(a))
    assert joined == [0, 2, 4]
    assert seen == [(r.id, 2 * i) for i, r in enumerate(results)]


# --- a sync wait inside a task: refused as before -------------------------------------------------
@pytest.fixture
async def worker_app() -> AsyncIterator[Celery]:
    """An app with tasks that wait for other tasks, served by a worker in this loop."""
    url = f"memory://{uuid.uuid4().hex}"
    app = Celery("twins-inside", broker=url, backend=url, set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def waits(how: str) -> Any:
        result = add.delay(1, 2)
        if how == "get":
            return result.get(timeout=WAIT)
        if how == "get allowed":
            return result.get(timeout=WAIT, disable_sync_subtasks=False)
        if how == "get allowed by position":
            return result.get(WAIT, True, 0.5, False)
        if how == "join":
            return group(add.s(1, 1), add.s(2, 2), app=app).apply_async().join(timeout=WAIT)
        if how == "join allowed":
            members = group(add.s(1, 1), add.s(2, 2), app=app).apply_async()
            return members.join(timeout=WAIT, disable_sync_subtasks=False)
        return add.apply((3, 4)).get()  # eager: nothing to wait for

    worker = Worker(app, WorkerOptions(concurrency=4, pool="threads", banner=False))
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    yield app
    worker.stop()
    await asyncio.wait_for(running, 30)
    await app.aclose()
    await asyncio.to_thread(app.close)


async def outcome(app: Celery, how: str) -> Any:
    result = await app.tasks[f"{__name__}.waits"].adelay(how)
    return await result.aget(timeout=WAIT, propagate=False)


@pytest.mark.parametrize("how", ["get", "join"])
async def test_a_sync_wait_inside_a_task_is_refused(worker_app: Celery, how: str) -> None:
    refused = await outcome(worker_app, how)
    assert isinstance(refused, RuntimeError)
    assert "Never call result.get() within a task" in str(refused)


@pytest.mark.parametrize(
    ("how", "value"),
    [("get allowed", 3), ("get allowed by position", 3), ("join allowed", [2, 4]), ("eager", 7)],
)
async def test_a_sync_wait_inside_a_task_when_allowed(
    worker_app: Celery, how: str, value: Any
) -> None:
    assert await outcome(worker_app, how) == value
