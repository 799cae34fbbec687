"""What remote control tells of each worker, for ``/api/workers`` (Flower's inspector).

Events say whether a worker is up and how busy; the rest of what Flower's ``/api/workers``
shows comes from ``inspect`` replies: ``stats``, ``active_queues``, ``registered`` and
``conf`` for every worker, plus ``scheduled``, ``active``, ``reserved`` and ``revoked`` when
one worker is asked for (task lists can be long). :class:`Inspections` keeps the latest
reply to each, by worker, with the time it came. They are asked for when the dashboard
starts, when a worker comes online, and on ``/api/workers?refresh=true``. Secrets in the
arguments of the tasks listed are masked as the feed masks events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

from celeriac.exceptions import CeleriacError
from celeriac.web.masking import Masker

__all__ = ["ALL_WORKERS", "ONE_WORKER", "Inspections"]

logger = logging.getLogger("celeriac.web")

ALL_WORKERS = ("stats", "active_queues", "registered", "conf")
"""What is asked of every worker."""

ONE_WORKER = (*ALL_WORKERS, "scheduled", "active", "reserved", "revoked")
"""What is asked of one worker named by ``workername``."""

ASK_AGAIN = 60.0
"""Seconds before a worker that did not answer is asked again because it sent an event."""

_TASK_LISTS = frozenset({"scheduled", "active", "reserved"})


class Inspections:
    """The latest ``inspect`` replies of each worker."""

    def __init__(self, app: Any, *, timeout: float = 1.0, masker: Masker | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self.masker = masker or Masker()
        self.workers: defaultdict[str, dict[str, Any]] = defaultdict(dict)
        """By hostname: each method's reply, and ``inspected``: when the latest came."""
        self._pending: dict[str | None, asyncio.Task[None]] = {}
        self._asked: dict[str, float] = {}

    async def refresh(self, workername: str | None = None, *, tasks: bool | None = None) -> None:
        """Ask the workers (or only ``workername``) now, with their task lists when
        ``tasks`` (default: when one worker is named); raises ConnectionError when the
        broker carried none of the questions."""
        methods = (
            ONE_WORKER if (workername is not None if tasks is None else tasks) else ALL_WORKERS
        )
        inspect = self.app.control.inspect(
            timeout=self.timeout, destination=[workername] if workername else None
        )
        replies = await asyncio.gather(
            *(getattr(inspect, f"a{method}")() for method in methods), return_exceptions=True
        )
        failures = [reply for reply in replies if isinstance(reply, BaseException)]
        for failure in failures:
            if not isinstance(failure, OSError | CeleriacError):
                raise failure
        if failures and len(failures) == len(replies):
            raise ConnectionError(f"the broker did not carry the inspection: {failures[0]}")
        for method, reply in zip(methods, replies, strict=True):
            if isinstance(reply, dict):
                for hostname, answer in reply.items():
                    self._keep(str(hostname), method, answer)

    def seen(self, hostname: str) -> None:
        """A worker sent an event: ask it soon if nothing is known of it (a worker that
        came online while the dashboard was not yet listening), at most once a minute."""
        now = time.monotonic()
        if (
            hostname not in self.workers
            and now - self._asked.get(hostname, -ASK_AGAIN) >= ASK_AGAIN
        ):
            self._asked[hostname] = now
            self.soon(hostname)

    def soon(self, workername: str | None = None) -> None:
        """Refresh in the background (once at a time per worker, no task lists); failures
        are logged."""
        if workername in self._pending:
            return
        task = asyncio.create_task(self._refresh_logged(workername))
        self._pending[workername] = task
        task.add_done_callback(lambda _: self._pending.pop(workername, None))

    async def close(self) -> None:
        """Cancel the background refreshes."""
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_logged(self, workername: str | None) -> None:
        try:
            await self.refresh(workername, tasks=False)
        except (ConnectionError, OSError, CeleriacError) as exc:
            logger.warning("the dashboard could not inspect %s: %s", workername or "workers", exc)

    def _keep(self, hostname: str, method: str, answer: Any) -> None:
        if method in _TASK_LISTS and isinstance(answer, list):
            answer = [self._masked(item) for item in answer]
        info = self.workers[hostname]
        info[method] = answer
        info["inspected"] = time.time()

    def _masked(self, item: Any) -> Any:
        """A listed task with its arguments masked (``scheduled`` nests it in ``request``)."""
        if not isinstance(item, dict):
            return item
        request = item.get("request")
        if isinstance(request, dict):
            return {**item, "request": self._masked(request)}
        return {
            key: self.masker.value(value) if key in ("args", "kwargs") else value
            for key, value in item.items()
        }
