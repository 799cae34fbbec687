"""``app.control``: send remote-control commands and collect the replies, as Celery's.

Every call broadcasts one request on the mailbox's fanout exchange (see
:mod:`celeriac.control.wire`). Calls that want answers declare this client's reply queue
once (``<client id>.reply.celery.pidbox``, bound to ``reply.celery.pidbox`` with the
client id) and collect what arrives for the request's ticket until ``timeout`` passes or
``limit`` replies came (by default as many as ``destination`` names). Return shapes are
Celery's: ``broadcast(reply=True)`` and the control methods give ``[{hostname: answer}]``,
``inspect()`` methods give ``{hostname: answer}`` or None when nobody answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from celeriac._portal import sync_twin
from celeriac.control import wire
from celeriac.protocol.ids import uuid4
from celeriac.transport import Outgoing, QueueSpec, Transport

__all__ = ["Control", "Inspect", "flatten_reply"]

logger = logging.getLogger("celeriac.control")

REPLY_POLL = 0.1
"""Longest single wait for replies: Celery workers' replies wake no waiting consumer."""


def flatten_reply(replies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``[{host: answer}, ...]`` as one ``{host: answer}`` (warning on a duplicate name)."""
    nodes: dict[str, Any] = {}
    for reply in replies:
        for host, answer in reply.items():
            if host in nodes:
                warnings.warn(
                    f"Received multiple replies from node name: {host}; "
                    "give each worker a unique node name (-n)",
                    stacklevel=2,
                )
            nodes[host] = answer
    return nodes


class Control:
    """Celery's ``app.control`` for a celeriac app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.names = wire.MailboxNames(app.conf["control_exchange"])
        self.client_id = uuid4()
        self.clock = wire.Clock()
        self._declared: dict[int, Transport] = {}
        self._unclaimed: dict[str, list[dict[str, Any]]] = {}
        """Replies fetched by one collector for another request being collected now."""

    # -- the primitive ------------------------------------------------------------------
    async def abroadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        connection: Any = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        channel: Any = None,
        pattern: str | None = None,
        matcher: str | None = None,
        **extra_kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Send ``command`` to every worker (or ``destination``, or names matching
        ``pattern`` with ``matcher`` ``glob``/``pcre``); with ``reply``, return the answers."""
        if destination is not None and not isinstance(destination, list | tuple):
            raise ValueError(f"destination must be a list/tuple not {type(destination)}")
        transport = await self.app.aget_transport()
        request = wire.Request(
            method=command,
            arguments={**(arguments or {}), **extra_kwargs},
            destination=list(destination) if destination else None,
            pattern=pattern,
            matcher=matcher,
        )
        if reply:
            await self._declare_reply_queue(transport)
            request.ticket = uuid4()
            request.reply_to = {
                "exchange": self.names.reply_exchange,
                "routing_key": self.client_id,
            }
            request.expires = time.time() + timeout
            if limit is None and destination:
                limit = len(destination)
        envelope = wire.encode_request(request, self.clock.forward())
        broadcast = Outgoing(envelope, exchange=self.names.exchange, routing_key="", optional=True)
        if not reply:
            await transport.publish([broadcast])
            return None
        assert request.ticket is not None
        self._unclaimed[request.ticket] = []  # before a reply can come: see _collect
        try:
            await transport.publish([broadcast])
        except BaseException:
            del self._unclaimed[request.ticket]
            raise
        return await self._collect(transport, request.ticket, timeout, limit, callback)

    broadcast = sync_twin(abroadcast)

    async def _declare_reply_queue(self, transport: Transport) -> None:
        # Every time, not once: RabbitMQ deletes the reply queue when its consumer goes
        # (auto-delete, x-expires), and a client asking again after a quiet minute (the
        # dashboard) would wait on a queue that is no longer there.
        await transport.declare([self._reply_spec()])
        self._declared[id(transport)] = transport

    def _reply_spec(self) -> QueueSpec:
        """This client's reply queue and its binding to the reply exchange."""
        return QueueSpec(
            name=self.names.reply_queue(self.client_id),
            exchange=self.names.reply_exchange,
            exchange_type="direct",
            routing_key=self.client_id,
            durable=False,
            auto_delete=True,  # as kombu's reply queue
            queue_arguments={
                "x-expires": int(float(self.app.conf["control_queue_expires"] or 10) * 1000)
            },
        )

    async def arelease(self, transport: Transport) -> None:
        """Remove this client's reply binding (and queue) from ``transport``'s broker, if
        it declared one there. The app calls it before closing the transport: Redis and
        SQLite keep bindings until they are removed, so every client would leave one."""
        if self._declared.pop(id(transport), None) is None:
            return
        try:
            await transport.unbind([self._reply_spec()])
        except Exception as exc:  # closing must go on; the binding only costs a key
            logger.warning("control: could not remove the reply binding: %s", exc)

    async def _collect(
        self,
        transport: Transport,
        ticket: str,
        timeout: float,
        limit: int | None,
        callback: Callable[[dict[str, Any]], None] | None,
    ) -> list[dict[str, Any]]:
        queue = self.names.reply_queue(self.client_id)
        replies: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._unclaimed.setdefault(ticket, [])
        try:
            while limit is None or len(replies) < limit:
                # Requests collected at the same time share the reply queue: what another
                # collector fetched for this ticket is waiting here.
                for body in self._unclaimed[ticket]:
                    self._accept(body, replies, callback)
                self._unclaimed[ticket].clear()
                remaining = deadline - loop.time()
                if remaining <= 0 or (limit is not None and len(replies) >= limit):
                    break
                deliveries = await transport.fetch(
                    [queue], limit=100, timeout=min(remaining, REPLY_POLL)
                )
                if deliveries:
                    await transport.ack(deliveries)
                for delivery in deliveries:
                    self._take(delivery.envelope, ticket, replies, callback)
        finally:
            del self._unclaimed[ticket]
        return replies[:limit] if limit is not None else replies

    def _take(
        self,
        envelope: Any,
        ticket: str,
        replies: list[dict[str, Any]],
        callback: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        try:
            their_ticket, body = wire.decode_reply(envelope)
        except ValueError as exc:
            logger.warning("control: dropped a reply: %s", exc)
            return
        self.clock.adjust(envelope.headers.get("clock"))
        if their_ticket not in (None, ticket):
            waiting = self._unclaimed.get(their_ticket)
            if waiting is not None:  # else a late reply to a request no longer collected
                waiting.append(body)
            return
        self._accept(body, replies, callback)

    @staticmethod
    def _accept(
        body: dict[str, Any],
        replies: list[dict[str, Any]],
        callback: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        if callback is not None:
            callback(body)
        replies.append(body)

    # -- Celery's helpers ---------------------------------------------------------------
    def inspect(
        self,
        destination: Sequence[str] | str | None = None,
        timeout: float = 1.0,
        callback: Callable[[dict[str, Any]], None] | None = None,
        connection: Any = None,
        app: Any = None,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> Inspect:
        """An :class:`Inspect` for ``destination`` (a name or a list), waiting ``timeout`` s."""
        return Inspect(self, destination, timeout, callback, limit, pattern, matcher)

    async def aping(
        self, destination: Sequence[str] | None = None, timeout: float = 1.0, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Ping workers: ``[{hostname: {'ok': 'pong'}}]``."""
        return await self._call("ping", {}, destination, timeout, kwargs)

    ping = sync_twin(aping)

    async def arevoke(
        self,
        task_id: str | Sequence[str],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str = "SIGTERM",
        **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Revoke tasks: persisted for workers started later, and told to running workers
        (``terminate`` kills the processes running them)."""
        await self.app.apersist_revokes(task_id)
        arguments = {"task_id": task_id, "terminate": terminate, "signal": signal}
        return await self.abroadcast("revoke", arguments, destination, **kwargs)

    revoke = sync_twin(arevoke)

    async def aterminate(
        self,
        task_id: str | Sequence[str],
        destination: Sequence[str] | None = None,
        signal: str = "SIGTERM",
        **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Revoke and kill running tasks."""
        return await self.arevoke(task_id, destination, terminate=True, signal=signal, **kwargs)

    terminate = sync_twin(aterminate)

    async def arate_limit(
        self,
        task_name: str,
        rate_limit: str | int | float,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Set ``task_name``'s rate limit on the workers (``'10/m'``; 0 removes it)."""
        arguments = {"task_name": task_name, "rate_limit": rate_limit}
        return await self.abroadcast("rate_limit", arguments, destination, **kwargs)

    rate_limit = sync_twin(arate_limit)

    async def atime_limit(
        self,
        task_name: str,
        soft: float | None = None,
        hard: float | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Set ``task_name``'s soft and hard time limits on the workers."""
        arguments = {"task_name": task_name, "soft": soft, "hard": hard}
        return await self.abroadcast("time_limit", arguments, destination, **kwargs)

    time_limit = sync_twin(atime_limit)

    async def ashutdown(
        self, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Warm-shut the workers down (they do not reply)."""
        return await self.abroadcast("shutdown", {}, destination, **kwargs)

    shutdown = sync_twin(ashutdown)

    async def apool_grow(
        self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Ask the pools to grow (celeriac's pools answer that they cannot)."""
        return await self.abroadcast("pool_grow", {"n": n}, destination, **kwargs)

    pool_grow = sync_twin(apool_grow)

    async def apool_shrink(
        self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Ask the pools to shrink (celeriac's pools answer that they cannot)."""
        return await self.abroadcast("pool_shrink", {"n": n}, destination, **kwargs)

    pool_shrink = sync_twin(apool_shrink)

    async def aautoscale(
        self, max: int, min: int, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Change autoscale bounds (celeriac workers do not autoscale)."""
        return await self.abroadcast("autoscale", {"max": max, "min": min}, destination, **kwargs)

    autoscale = sync_twin(aautoscale)

    async def aadd_consumer(
        self,
        queue: str,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
        options: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Have the workers consume ``queue`` too."""
        arguments = {
            "queue": queue,
            "exchange": exchange,
            "exchange_type": exchange_type,
            "routing_key": routing_key,
            **(options or {}),
        }
        return await self.abroadcast("add_consumer", arguments, destination, **kwargs)

    add_consumer = sync_twin(aadd_consumer)

    async def acancel_consumer(
        self, queue: str, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Have the workers stop consuming ``queue``."""
        return await self.abroadcast("cancel_consumer", {"queue": queue}, destination, **kwargs)

    cancel_consumer = sync_twin(acancel_consumer)

    async def aenable_events(
        self, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Have the workers send task events."""
        return await self.abroadcast("enable_events", {}, destination, **kwargs)

    enable_events = sync_twin(aenable_events)

    async def adisable_events(
        self, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Have the workers stop sending task events."""
        return await self.abroadcast("disable_events", {}, destination, **kwargs)

    disable_events = sync_twin(adisable_events)

    async def aheartbeat(
        self, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Have the workers send a heartbeat event now."""
        return await self.abroadcast("heartbeat", {}, destination, **kwargs)

    heartbeat = sync_twin(aheartbeat)

    async def _call(
        self,
        command: str,
        arguments: dict[str, Any],
        destination: Sequence[str] | None,
        timeout: float,
        kwargs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        kwargs.setdefault("reply", True)
        replies = await self.abroadcast(command, arguments, destination, timeout=timeout, **kwargs)
        return replies or []


class Inspect:
    """Celery's ``app.control.inspect()``: each method returns ``{hostname: answer}`` or
    None when no worker answered within the timeout."""

    def __init__(
        self,
        control: Control,
        destination: Sequence[str] | str | None,
        timeout: float,
        callback: Callable[[dict[str, Any]], None] | None,
        limit: int | None,
        pattern: str | None,
        matcher: str | None,
    ) -> None:
        self.control = control
        self.app = control.app
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.limit = limit
        self.pattern = pattern
        self.matcher = matcher

    async def _arequest(self, command: str, **arguments: Any) -> Any:
        """Send ``command`` and return the replies by node (Celery's ``_request``)."""
        one = isinstance(self.destination, str)
        destination = [self.destination] if isinstance(self.destination, str) else self.destination
        replies = await self.control.abroadcast(
            command,
            arguments,
            destination,
            reply=True,
            timeout=self.timeout,
            limit=self.limit,
            callback=self.callback,
            pattern=self.pattern,
            matcher=self.matcher,
        )
        if not replies:
            return None
        by_node = flatten_reply(replies)
        return by_node.get(str(self.destination)) if one else by_node

    async def aping(self, destination: Sequence[str] | None = None) -> Any:
        """``{host: {'ok': 'pong'}}``."""
        return await self._arequest("ping")

    ping = sync_twin(aping)

    async def aactive(self, safe: bool | None = None) -> Any:
        """Tasks being executed."""
        return await self._arequest("active", **({} if safe is None else {"safe": safe}))

    active = sync_twin(aactive)

    async def areserved(self, safe: bool | None = None) -> Any:
        """Tasks received, waiting to run."""
        return await self._arequest("reserved")

    reserved = sync_twin(areserved)

    async def ascheduled(self, safe: bool | None = None) -> Any:
        """Tasks held until their ETA."""
        return await self._arequest("scheduled")

    scheduled = sync_twin(ascheduled)

    async def arevoked(self) -> Any:
        """Revoked task ids."""
        return await self._arequest("revoked")

    revoked = sync_twin(arevoked)

    async def aregistered(self, *taskinfoitems: str) -> Any:
        """Registered task names (with ``taskinfoitems`` attributes)."""
        return await self._arequest("registered", taskinfoitems=list(taskinfoitems) or None)

    registered = sync_twin(aregistered)
    registered_tasks = registered

    async def astats(self) -> Any:
        """Worker statistics."""
        return await self._arequest("stats")

    stats = sync_twin(astats)

    async def aactive_queues(self) -> Any:
        """Queues consumed."""
        return await self._arequest("active_queues")

    active_queues = sync_twin(aactive_queues)

    async def aconf(self, with_defaults: bool = False) -> Any:
        """Settings of each worker."""
        return await self._arequest("conf", with_defaults=with_defaults)

    conf = sync_twin(aconf)

    async def aquery_task(self, *ids: str | Sequence[str]) -> Any:
        """State and info of the given task ids held by the workers."""
        flat: list[str] = []
        for i in ids:
            flat.extend([i] if isinstance(i, str) else i)
        return await self._arequest("query_task", ids=flat)

    query_task = sync_twin(aquery_task)

    async def areport(self) -> Any:
        """Bug reports of each worker."""
        return await self._arequest("report")

    report = sync_twin(areport)

    async def aclock(self) -> Any:
        """Logical clocks."""
        return await self._arequest("clock")

    clock = sync_twin(aclock)
