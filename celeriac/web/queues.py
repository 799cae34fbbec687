"""Queues in the dashboard: how many messages wait in each, who consumes it, how fast.

The queues are those the workers say they consume (the ``active_queues`` remote-control
command, answered within :data:`INSPECT_TIMEOUT`); when none answers, the app's default
queue and its ``task_queues``, as Flower does. The depth is the broker's count of waiting
messages, delayed ones included (:meth:`~celeriac.transport.Transport.queue_sizes`).
The rates in and out (messages per second over the last minute, and what each was
measured from: events or depth changes) are the feed's :class:`~celeriac.web.rates.QueueRates`.
``GET /api/queues/length`` answers in Flower's shape; ``GET /api/queues`` and the ``/queues``
page add the consumers and the rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from celeriac.exceptions import CeleriacError
from celeriac.web.api import ApiError, dashboard_of, json_response
from celeriac.web.pages import render
from celeriac.web.rates import QueueRates, Rate

__all__ = ["INSPECT_TIMEOUT", "QueueRow", "queue_rows", "routes"]

logger = logging.getLogger("celeriac.web")

INSPECT_TIMEOUT = 1.0
"""Seconds the workers have to say which queues they consume (Flower's default)."""


@dataclass
class QueueRow:
    """One queue: its name, the messages waiting in it, the workers consuming it."""

    name: str
    messages: int = 0
    consumers: list[str] = field(default_factory=list)
    rate_in: Rate = field(default_factory=lambda: Rate(None, None))
    rate_out: Rate = field(default_factory=lambda: Rate(None, None))

    def as_dict(self) -> dict[str, Any]:
        """The row as ``/api/queues`` shows it."""
        return {
            "name": self.name,
            "messages": self.messages,
            "consumers": self.consumers,
            "rate_in": self.rate_in.per_second,
            "rate_in_source": self.rate_in.source,
            "rate_out": self.rate_out.per_second,
            "rate_out_source": self.rate_out.source,
        }


async def _consumed(app: Any) -> dict[str, list[str]]:
    """Queue name → the workers that said they consume it (empty when none answered)."""
    try:
        replies = await app.control.abroadcast("active_queues", reply=True, timeout=INSPECT_TIMEOUT)
    except (OSError, CeleriacError, NotImplementedError) as exc:
        logger.info("the dashboard could not ask the workers for their queues: %s", exc)
        return {}
    found: dict[str, list[str]] = {}
    for reply in replies or ():
        for host, queues in reply.items():
            for queue in queues if isinstance(queues, list) else ():
                if isinstance(queue, dict) and isinstance(queue.get("name"), str):
                    found.setdefault(queue["name"], []).append(host)
    return found


def _configured(app: Any) -> list[str]:
    names = [app.conf["task_default_queue"]]
    for queue in app.conf.get("task_queues") or ():
        name = getattr(queue, "name", None)
        if isinstance(name, str) and name:
            names.append(name)
    return names


async def queue_rows(app: Any, rates: QueueRates | None = None) -> list[QueueRow]:
    """Every active queue with its depth and consumers, by name; with ``rates``, the depths
    are sampled into it and each row has its rates."""
    consumed = await _consumed(app)
    names = sorted(set(consumed) or set(_configured(app)))
    transport = await app.aget_transport()
    try:
        sizes = await transport.queue_sizes(names)
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not count its queues: {exc}") from None
    rows = [
        QueueRow(name, int(sizes.get(name, 0)), sorted(consumed.get(name, []))) for name in names
    ]
    if rates is not None:
        rates.sample({row.name: row.messages for row in rows})
        queues_of: dict[str, int] = {}
        for hosts in consumed.values():
            for host in hosts:
                queues_of[host] = queues_of.get(host, 0) + 1
        for row in rows:
            sole = [host for host in row.consumers if queues_of.get(host) == 1]
            row.rate_in, row.rate_out = rates.rates(row.name, sole)
    return rows


async def _rows(request: Request) -> list[QueueRow]:
    dashboard = dashboard_of(request)
    return await queue_rows(dashboard.app, dashboard.feed.rates)


async def queue_lengths(request: Request) -> Response:
    """``GET /api/queues/length``: ``{"active_queues": [{"name", "messages"}]}`` (Flower's)."""
    rows = await _rows(request)
    lengths = [{"name": row.name, "messages": row.messages} for row in rows]
    return json_response({"active_queues": lengths})


async def page(request: Request) -> Response:
    """The queues: messages waiting, who consumes each, and the rates in and out."""
    return render(request, "queues", "queues", queues=await _rows(request))


async def queues_api(request: Request) -> Response:
    """``GET /api/queues``: per queue its depth, consumers and rates in and out."""
    return json_response([row.as_dict() for row in await _rows(request)])


def routes() -> list[Route]:
    """The queues' API and page routes."""
    return [
        Route("/api/queues", queues_api, methods=["GET"]),
        Route("/api/queues/length", queue_lengths, methods=["GET"]),
        Route("/queues", page, methods=["GET"]),
    ]
