"""A received task as ``task_received`` receivers see it: Celery's ``Request`` attributes.

Read-only: it describes a delivery the worker holds; it does not run or acknowledge it.
"""

from __future__ import annotations

from typing import Any

from celeriac.protocol.message import format_time
from celeriac.worker.flight import Flight

__all__ = ["Request"]


class Request:
    """The attributes of ``celery.worker.request.Request`` that describe the task."""

    __slots__ = ("_flight", "hostname")

    def __init__(self, flight: Flight, hostname: str) -> None:
        self._flight = flight
        self.hostname = hostname

    @property
    def id(self) -> str:
        """The task id."""
        return self._flight.msg.id

    task_id = id

    @property
    def name(self) -> str:
        """The task name."""
        return self._flight.msg.task

    task_name = name
    type = name

    @property
    def task(self) -> Any:
        """The registered task object."""
        return self._flight.task

    @property
    def args(self) -> list[Any]:
        return self._flight.msg.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._flight.msg.kwargs

    @property
    def argsrepr(self) -> str:
        msg = self._flight.msg
        return msg.argsrepr if msg.argsrepr is not None else repr(msg.args)

    @property
    def kwargsrepr(self) -> str:
        msg = self._flight.msg
        return msg.kwargsrepr if msg.kwargsrepr is not None else repr(msg.kwargs)

    @property
    def eta(self) -> str | None:
        """The ETA as an ISO-8601 string, as in the message."""
        return format_time(self._flight.msg.eta)

    @property
    def expires(self) -> str | None:
        return format_time(self._flight.msg.expires)

    @property
    def root_id(self) -> str | None:
        return self._flight.msg.root_id

    @property
    def parent_id(self) -> str | None:
        return self._flight.msg.parent_id

    @property
    def correlation_id(self) -> str:
        return self._flight.msg.id

    @property
    def reply_to(self) -> str | None:
        return self._flight.msg.reply_to

    @property
    def ignore_result(self) -> bool:
        return self._flight.msg.ignore_result

    @property
    def message(self) -> Any:
        """The delivery (celeriac's message object)."""
        return self._flight.delivery

    @property
    def delivery_info(self) -> dict[str, Any]:
        delivery = self._flight.delivery
        return {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "priority": self._flight.msg.priority,
            "redelivered": delivery.redelivered,
        }

    @property
    def content_type(self) -> str:
        return self._flight.delivery.envelope.content_type

    @property
    def content_encoding(self) -> str:
        return self._flight.delivery.envelope.content_encoding

    def __repr__(self) -> str:
        return f"<Request: {self.name}[{self.id}] {self.argsrepr} {self.kwargsrepr}>"
