"""The dashboard's view of the cluster: events in, cluster state and live subscribers out.

A :class:`Feed` runs one event receiver on the app's broker for as long as the web app
lives (reconnecting with a :class:`~celeriac.retry.Backoff` when the broker goes away),
feeds every event to a :class:`~celeriac.events.state.State` (through a
:class:`~celeriac.web.tally.Tally` that keeps its counts) and to the metrics, and
hands a copy to each live subscriber (the ``/api/events`` stream). A subscriber that
does not keep up loses its oldest events, never the feed's. With a
:class:`~celeriac.web.history.History`, the state is loaded from it before the first event
and every task an event changes is written to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from celeriac.events.state import State
from celeriac.retry import Backoff
from celeriac.web.charts import Series
from celeriac.web.history import STORE_ERRORS, History
from celeriac.web.inspections import Inspections
from celeriac.web.masking import Masker
from celeriac.web.rates import QueueRates
from celeriac.web.tally import Tally

__all__ = ["Feed"]

logger = logging.getLogger("celeriac.web")

SUBSCRIBER_BACKLOG = 1000
"""Events a live subscriber may fall behind by before it loses the oldest."""

_FINISHED = frozenset({"task-succeeded", "task-failed"})


class Feed:
    """The cluster state of one app, kept current from its events."""

    def __init__(
        self,
        app: Any,
        *,
        max_tasks: int = 10000,
        on_event: Callable[[dict[str, Any], State], None] | None = None,
        history: History | None = None,
        masker: Masker | None = None,
        inspections: Inspections | None = None,
    ) -> None:
        self.app = app
        self.masker = masker or Masker()
        """Masks secrets in each event's arguments and result before anything keeps them."""
        self.history = history
        self.inspections = inspections
        """The workers' ``inspect`` replies, asked for at start and when one comes online."""
        """Where tasks are kept across restarts, or None (memory only)."""
        self.state = State(max_tasks_in_memory=max_tasks)
        self.tally = Tally()
        """The state's tasks counted by name and state."""
        self.series = Series()
        """Tasks finished per minute over the last hour, for the overview's charts."""
        self.rates = QueueRates()
        """Messages in and out of each queue per second, for the queues page."""
        self.on_event = on_event
        self.connected = False
        """Whether the receiver is subscribed to the event exchange now."""
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def totals(self) -> Tally:
        """The overview's counts: of every task in the history, else of those in memory."""
        return self.history.totals if self.history is not None else self.tally

    def take(self, event: dict[str, Any]) -> None:
        """Apply one event to the state and the metrics, and pass it to the subscribers."""
        self.masker.event(event)
        self.tally.take(self.state, event)
        self.rates.observe(event, self.state)
        uuid = event.get("uuid")
        if event.get("type") in _FINISHED and isinstance(uuid, str):
            task = self.state.tasks.get(uuid)
            if task is not None:
                self.series.add_task(task)
        if self.history is not None and isinstance(uuid, str):
            changed = self.state.tasks.get(uuid)
            if changed is not None:
                self.history.changed(changed)
        kind = str(event.get("type", ""))
        if self.inspections is not None and kind.startswith("worker-"):
            if kind == "worker-online":  # perhaps restarted: its settings may be new
                self.inspections.soon(str(event.get("hostname")))
            else:
                self.inspections.seen(str(event.get("hostname")))
        if self.on_event is not None:
            self.on_event(event, self.state)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # this subscriber is behind: drop its oldest
            queue.put_nowait(event)

    async def keep_pace(self) -> None:
        """Wait while the history's writer is behind (:meth:`History.behind`): what the
        feed has not taken yet waits in the broker, not in the dashboard's memory."""
        if self.history is not None and self.history.behind():
            await self.history.caught_up()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives every event from now until the block ends."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def start(self) -> None:
        """Start receiving in the running loop (no-op when already started)."""
        if self._task is None and self.app.events.supported:
            self._task = asyncio.create_task(self._run(), name="celeriac-web-events")
            if self.inspections is not None:
                self.inspections.soon()

    async def stop(self) -> None:
        """Stop receiving."""
        task, self._task = self._task, None
        if self.inspections is not None:
            await self.inspections.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.history is not None and self.history.pending():
            # Stopped before its history's writer started (or without one): keep the news.
            try:
                await self.history.flush(self.state)
            except STORE_ERRORS as exc:
                history = self.history
                logger.warning("the dashboard could not write its history %s: %s", history, exc)
            finally:
                await self.history.close()

    async def _run(self) -> None:
        if self.history is None:
            await self._receive()
            return
        try:
            loaded = await self.history.load(self.state, self.tally)
            await self.history.chart(self.series)
        except Exception as exc:  # a broken file must not keep the dashboard from the events
            logger.warning("the dashboard could not read its history %s: %s", self.history, exc)
        else:
            logger.info("the dashboard loaded %d tasks from %s", loaded, self.history)
        keeper = asyncio.create_task(self.history.run(self.state), name="celeriac-web-history")
        try:
            await self._receive()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _receive(self) -> None:
        backoff = Backoff(first=0.5, max_delay=10.0)
        while True:
            receiver = self.app.events.Receiver(handlers={"*": self.take})
            try:
                self.connected = True
                async for _ in receiver.aiter_events():
                    backoff.reset()
                    await self.keep_pace()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: reconnect
                logger.warning("the dashboard lost the event stream (%s); reconnecting", exc)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await receiver.aclose()
            await backoff.sleep()
