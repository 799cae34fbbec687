"""Run coroutines for synchronous callers on a private background event loop.

Every transport and backend is written once, as asyncio code. ``task.delay()`` and
``AsyncResult.get()`` called from plain sync code (a Flask view, a script) hand
their coroutine to this loop's thread and block on the answer. After ``fork`` the
child gets a fresh portal: the parent's thread does not exist there.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Portal", "get_portal"]

T = TypeVar("T")


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
