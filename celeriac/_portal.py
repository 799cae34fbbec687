"""Run coroutines for synchronous callers on a private background event loop.

Every transport and backend is written once, as asyncio code. ``task.delay()`` and
``AsyncResult.get()`` called from plain sync code (a Flask view, a script) hand
their coroutine to this loop's thread and block on the answer. After ``fork`` the
child gets a fresh portal: the parent's thread does not exist there.

The public API is written the same way: each blocking method is derived from its
``a``-prefixed async twin by :func:`sync_twin` (``get = sync_twin(aget)``), so the
parameters, defaults and documentation exist once, on the async method.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, ParamSpec, Protocol, TypeVar, cast

__all__ = ["Portal", "SyncRunner", "get_portal", "sync_twin"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class Portal:
    """A daemon thread running an event loop, and a blocking ``run(coro)``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="celeriac-portal", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the portal loop and wait for its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Portal.run called from the portal's own thread")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` without waiting."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


_lock = threading.Lock()
_portal: Portal | None = None
_pid = os.getpid()


def get_portal() -> Portal:
    """The process-wide portal, created on first use (and anew in a forked child)."""
    global _portal, _pid
    with _lock:
        if _portal is None or _pid != os.getpid():
            _portal = Portal()
            _pid = os.getpid()
        return _portal


def _forget_after_fork() -> None:
    global _portal, _lock
    _portal = None
    _lock = threading.Lock()  # the parent's lock may have been held by another thread


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _stop_at_exit() -> None:
    if _portal is not None and _pid == os.getpid():
        _portal.stop()


# --- sync twins ---------------------------------------------------------------------------------
class SyncRunner(Protocol):
    """What runs a sync twin's coroutine: the app's ``run_sync`` (the portal, one place that
    tests can watch)."""

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the portal loop and wait for its result."""
        ...


def sync_twin(
    afn: Callable[P, Coroutine[Any, Any, R]],
    *,
    here: Callable[..., R] | None = None,
    via: Callable[[Any], SyncRunner] | None = None,
) -> Callable[P, R]:
    """The blocking twin of the async method ``afn``: ``get = sync_twin(aget)``.

    The twin is named after ``afn`` without its leading ``a``, takes the same parameters
    and defaults (``inspect.signature``, ``help()`` and mypy see them) and carries
    ``afn``'s docstring. Calling it runs ``afn`` on the portal loop through
    ``via(owner).run_sync`` (by default the owner's ``app``) and blocks for the answer;
    an exception propagates as raised. A sync call from a running event loop blocks that
    loop until the portal answers, as a blocking call does; from the portal's own thread
    it is refused. For a classmethod, write ``restore = classmethod(sync_twin(arestore))``.

    ``here`` (a method of the same class) is a fast path in the calling thread: it is
    called instead, with the call's arguments by keyword (as ``afn`` binds them, defaults
    filled in) and returns the answer, reaching the portal itself when it must. It names
    the parameters it reads (keyword-only) and takes ``**_`` for the others. ``afn`` and
    ``here`` are looked up on the owner at each call, so a subclass's override is the one
    that runs.
    """
    func = afn.__func__ if isinstance(afn, classmethod) else afn
    if not inspect.iscoroutinefunction(func) or not func.__name__.startswith("a"):
        raise TypeError(f"sync_twin derives from an async method named a<name>, not {func!r}")
    name = func.__name__
    app_of = via or _owner_app
    if here is None:

        def twin(owner: Any, /, *args: Any, **kwargs: Any) -> Any:
            return app_of(owner).run_sync(getattr(owner, name)(*args, **kwargs))

    else:
        arguments = _arguments_by_name(func, here)
        hook = here.__name__

        def twin(owner: Any, /, *args: Any, **kwargs: Any) -> Any:
            return getattr(owner, hook)(**arguments(getattr(owner, name)(*args, **kwargs)))

    _describe(twin, func, here)
    return cast("Callable[P, R]", twin)


def _owner_app(owner: Any) -> SyncRunner:
    runner: SyncRunner = owner.app
    return runner


def _arguments_by_name(
    func: Callable[..., Any], here: Callable[..., Any]
) -> Callable[[Coroutine[Any, Any, Any]], dict[str, Any]]:
    """How ``here`` receives a call of ``func``; TypeError when their parameters do not fit."""
    params = list(inspect.signature(func).parameters.values())[1:]
    if any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in params):
        raise TypeError(f"{func.__qualname__}: a fast path needs arguments that have names")
    taken = {p.name for p in params if p.kind is not p.VAR_KEYWORD}
    extra = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    reads = list(inspect.signature(here).parameters.values())[1:]
    unknown = {p.name for p in reads if p.kind is not p.VAR_KEYWORD} - taken
    if unknown:
        raise TypeError(
            f"{here.__qualname__} reads {sorted(unknown)}: not parameters of {func.__qualname__}"
        )
    if not any(p.kind is p.VAR_KEYWORD for p in reads) and (extra or len(reads) < len(taken)):
        raise TypeError(f"{here.__qualname__} must take **_ for what it does not read")
    owner = next(iter(inspect.signature(func).parameters))

    def arguments(call: Coroutine[Any, Any, Any]) -> dict[str, Any]:
        # Calling the async method bound the arguments exactly as Python does, defaults
        # included, and ran nothing: the locals of its frame are the call by name (what
        # inspect.getcoroutinelocals returns, read without its checks: this is per call).
        try:
            found = dict(call.cr_frame.f_locals)  # type: ignore[attr-defined]
        finally:
            call.close()
        del found[owner]
        if extra is not None:
            found.update(found.pop(extra))
        return found

    return arguments


def _describe(
    twin: Callable[..., Any], func: Callable[..., Any], here: Callable[..., Any] | None
) -> None:
    """Name and document ``twin`` after ``func``; give it ``func``'s signature."""
    name = func.__name__[1:]
    twin.__name__ = name
    twin.__qualname__ = f"{func.__qualname__[: -len(func.__name__)]}{name}"
    twin.__module__ = func.__module__
    twin.__annotations__ = dict(func.__annotations__)
    parts = [inspect.cleandoc(func.__doc__ or ""), f"Blocking twin of ``{func.__name__}``."]
    if here is not None and here.__doc__:
        parts[-1] += " " + inspect.cleandoc(here.__doc__)
    twin.__doc__ = "\n\n".join(part for part in parts if part)
    twin.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    twin.__wrapped__ = func  # type: ignore[attr-defined]  # typing.get_type_hints reads its globals
