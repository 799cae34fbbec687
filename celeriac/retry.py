"""One retry policy for every connection: how long to wait between attempts, and when to stop.

Every engine's broker, result store and beat store, and the listeners that reconnect in
the background, take their delays from a :class:`RetryPolicy`: the first delay, the factor
it grows by, its cap, and a limit in attempts and/or in seconds. Callers that retry one
operation use :meth:`RetryPolicy.call` (or :meth:`RetryPolicy.call_blocking` from a plain
thread); loops that reconnect for as long as they live keep a :class:`Backoff`.

The policy is read from an engine's options (``max_retries``, ``retry_backoff_max``,
``retry_interval_start``, ``retry_deadline`` — the names of its ``broker_transport_options``
/ ``result_backend_transport_options``, where :mod:`celeriac.reconnect` puts Celery's
``broker_connection_*`` and ``result_backend_*_retries`` settings) by
:meth:`RetryPolicy.from_options`; a ``prefix`` reads another set of the same names
(``connect_max_retries``: the first connection, ``broker_connection_retry_on_startup``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

__all__ = ["Backoff", "RetryPolicy"]

T = TypeVar("T")

logger = logging.getLogger("celeriac.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with a cap, limited by attempts and/or by time.

    ``max_retries=None`` retries for ever (up to ``deadline`` if one is set); a
    ``deadline`` (seconds from the first failure) stops retrying once the next wait
    would pass it. Each wait is the previous one times ``factor`` plus ``step`` (Celery's
    ``interval_step``, with ``factor=1``), capped at ``max_delay``.
    """

    first: float = 0.05
    factor: float = 2.0
    max_delay: float = 2.0
    max_retries: int | None = 7
    deadline: float | None = None
    step: float = 0.0

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], *, default: RetryPolicy | None = None, prefix: str = ""
    ) -> RetryPolicy:
        """The policy an engine's options ask for, over ``default`` (or the class defaults)."""
        base = default or cls()
        changes: dict[str, Any] = {}
        if prefix + "max_retries" in options:
            value = options[prefix + "max_retries"]
            changes["max_retries"] = None if value is None else int(value)
        if prefix + "retry_backoff_max" in options:
            changes["max_delay"] = float(options[prefix + "retry_backoff_max"])
        if prefix + "retry_interval_start" in options:
            changes["first"] = float(options[prefix + "retry_interval_start"])
        if prefix + "retry_deadline" in options:
            value = options[prefix + "retry_deadline"]
            changes["deadline"] = None if value is None else float(value)
        return replace(base, **changes) if changes else base

    def delays(self) -> Iterator[float]:
        """The waits between attempts, in order (endless when ``max_retries`` is None)."""
        delay = self.first
        count = 0
        while self.max_retries is None or count < self.max_retries:
            yield min(delay, self.max_delay)
            delay = min(delay * self.factor + self.step, self.max_delay)
            count += 1

    def backoff(self) -> Backoff:
        """A :class:`Backoff` growing as this policy's delays do (it never gives up)."""
        return Backoff(self.first, self.factor, self.max_delay)

    def _next_wait(self, waits: Iterator[float], started: float, now: float) -> float | None:
        """The next wait, or None once attempts or time are used up."""
        wait = next(waits, None)
        if wait is None:
            return None
        if self.deadline is not None:
            left = self.deadline - (now - started)
            if left <= 0:
                return None
            wait = min(wait, left)
        return wait

    async def call(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        retry_on: tuple[type[BaseException], ...],
        what: str,
        give_up: Callable[[BaseException, int], BaseException],
        stop: Callable[[], bool] = lambda: False,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Await ``op()``, again after ``retry_on`` errors; raise ``give_up(exc, attempts)``.

        ``stop()`` true (e.g. the connection was closed on purpose) ends retrying at once.
        ``fatal`` errors are raised as they are, even when they are among ``retry_on``
        (an engine's "not found" that subclasses its "channel closed").
        """
        try:
            return await op()  # the common case: no bookkeeping until something fails
        except retry_on as exc:
            retrying = _Retrying(self, what, give_up, fatal)
            await asyncio.sleep(retrying.wait_after(exc, stop()))
        while True:
            try:
                return await op()
            except retry_on as exc:
                await asyncio.sleep(retrying.wait_after(exc, stop()))

    def call_blocking(
        self,
        op: Callable[[], T],
        *,
        retry_on: tuple[type[BaseException], ...],
        what: str,
        give_up: Callable[[BaseException, int], BaseException],
        fatal: tuple[type[BaseException], ...] = (),
    ) -> T:
        """:meth:`call` for a plain thread: ``op`` is a blocking function."""
        try:
            return op()
        except retry_on as exc:
            retrying = _Retrying(self, what, give_up, fatal)
            time.sleep(retrying.wait_after(exc))
        while True:
            try:
                return op()
            except retry_on as exc:
                time.sleep(retrying.wait_after(exc))


class _Retrying:
    """The retries of one call, counted from its first failure."""

    __slots__ = ("attempts", "fatal", "give_up", "policy", "started", "waits", "what")

    def __init__(
        self,
        policy: RetryPolicy,
        what: str,
        give_up: Callable[[BaseException, int], BaseException],
        fatal: tuple[type[BaseException], ...],
    ) -> None:
        self.policy = policy
        self.what = what
        self.give_up = give_up
        self.fatal = fatal
        self.waits = policy.delays()
        self.started = time.monotonic()
        self.attempts = 0

    def wait_after(self, exc: BaseException, stopped: bool = False) -> float:
        """The wait before the next attempt; raises when there is to be none."""
        self.attempts += 1
        if isinstance(exc, self.fatal):
            raise exc
        wait = (
            None if stopped else self.policy._next_wait(self.waits, self.started, time.monotonic())
        )
        if wait is None:
            raise self.give_up(exc, self.attempts) from exc
        logger.warning("%s failed (%s); retrying in %.2fs", self.what, exc, wait)
        return wait


class Backoff:
    """The growing wait of a loop that reconnects for as long as it runs."""

    __slots__ = ("_current", "factor", "first", "max_delay")

    def __init__(self, first: float = 0.1, factor: float = 2.0, max_delay: float = 5.0) -> None:
        self.first = first
        self.factor = factor
        self.max_delay = max_delay
        self._current = first

    def next(self) -> float:
        """The wait to use now; the following one is longer, up to the cap."""
        wait = min(self._current, self.max_delay)
        self._current = min(self._current * self.factor, self.max_delay)
        return wait

    def reset(self) -> None:
        """Start from the first wait again (after a success)."""
        self._current = self.first

    async def sleep(self) -> None:
        """Sleep for :meth:`next`."""
        await asyncio.sleep(self.next())
