"""The remote-control wire format: kombu's pidbox messages, as Celery sends and answers them.

Names (``control_exchange`` = ``celery`` by default, the mailbox's *namespace*):

* requests go to the fanout exchange ``<namespace>.pidbox``; each worker consumes its own
  queue ``<hostname>.<namespace>.pidbox`` bound to it (on Redis: kombu's pub/sub channel);
* replies go to the direct exchange ``reply.<namespace>.pidbox`` with the client's id as
  routing key, which binds the client's queue ``<id>.reply.<namespace>.pidbox``.

A request body is a JSON object ``{"method", "arguments", "destination", "pattern",
"matcher"}``, plus ``"ticket"`` and ``"reply_to": {"exchange", "routing_key"}`` when an
answer is wanted. Its headers carry a Lamport ``clock`` and ``expires`` (epoch seconds, 0:
never). A reply body is ``{hostname: answer}`` with the request's ``ticket`` and a ``clock``
in its headers. Bodies are JSON; objects JSON cannot carry are sent as their ``repr``, as
Celery's ``jsonify`` does.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from celeriac.protocol.envelope import Envelope

__all__ = [
    "Clock",
    "MailboxNames",
    "Request",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "expired",
    "matches",
]

JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class MailboxNames:
    """Exchange and queue names of one mailbox namespace (Celery's ``control_exchange``)."""

    namespace: str = "celery"

    @property
    def exchange(self) -> str:
        """The fanout exchange requests are broadcast on."""
        return f"{self.namespace}.pidbox"

    @property
    def reply_exchange(self) -> str:
        """The direct exchange replies are routed through."""
        return f"reply.{self.namespace}.pidbox"

    def node_queue(self, hostname: str) -> str:
        """The queue of worker ``hostname``."""
        return f"{hostname}.{self.namespace}.pidbox"

    def reply_queue(self, client_id: str) -> str:
        """The reply queue of client ``client_id`` (bound with the id as routing key)."""
        return f"{client_id}.{self.reply_exchange}"


class Clock:
    """A Lamport clock, as kombu keeps one per mailbox (its value goes in each header)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.value = 0

    def forward(self) -> int:
        """Tick and return the new value."""
        self.value = max(self.value + 1, next(self._counter))
        return self.value

    def adjust(self, other: Any) -> None:
        """Move past a clock value seen in a message."""
        if isinstance(other, int) and other > self.value:
            self.value = other
            self._counter = itertools.count(other + 1)


@dataclass(slots=True)
class Request:
    """A decoded control request."""

    method: str
    arguments: dict[str, Any] = field(default_factory=dict)
    destination: list[str] | None = None
    pattern: str | None = None
    matcher: str | None = None
    ticket: str | None = None
    reply_to: dict[str, str] | None = None
    expires: float = 0.0
    clock: int = 0

    @property
    def wants_reply(self) -> bool:
        """Whether the sender waits for an answer."""
        return bool(self.reply_to and self.ticket)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=repr).encode()


def encode_request(request: Request, clock: int) -> Envelope:
    """The envelope broadcasting ``request``."""
    body: dict[str, Any] = {
        "method": request.method,
        "arguments": request.arguments,
        "destination": request.destination,
        "pattern": request.pattern,
        "matcher": request.matcher,
    }
    if request.wants_reply:
        body["ticket"] = request.ticket
        body["reply_to"] = request.reply_to
    return Envelope(
        body=_dumps(body),
        headers={"clock": clock, "expires": request.expires},
        content_type=JSON_TYPE,
        properties={"delivery_mode": 2},
    )


def decode_request(envelope: Envelope) -> Request:
    """The request in ``envelope``; raise ValueError naming what is wrong with it."""
    body = _json_object(envelope, "control message")
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise ValueError("control message has no 'method' string")
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise ValueError(f"'arguments' of {method!r} is not an object")
    destination = body.get("destination")
    if destination is not None and (
        not isinstance(destination, list) or not all(isinstance(d, str) for d in destination)
    ):
        raise ValueError(f"'destination' of {method!r} is not a list of names")
    reply_to = body.get("reply_to")
    if reply_to is not None and not (
        isinstance(reply_to, dict)
        and isinstance(reply_to.get("exchange"), str)
        and isinstance(reply_to.get("routing_key"), str)
    ):
        raise ValueError(f"'reply_to' of {method!r} is not {{exchange, routing_key}}")
    headers = envelope.headers
    expires = headers.get("expires") or 0
    clock = headers.get("clock")
    return Request(
        method=method,
        arguments=arguments,
        destination=destination,
        pattern=_str_or_none(body.get("pattern")),
        matcher=_str_or_none(body.get("matcher")),
        ticket=_str_or_none(body.get("ticket")),
        reply_to=reply_to,
        expires=float(expires) if isinstance(expires, (int, float)) else 0.0,
        clock=clock if isinstance(clock, int) else 0,
    )


def encode_reply(hostname: str, answer: Any, ticket: str, clock: int) -> Envelope:
    """The envelope answering a request: ``{hostname: answer}``."""
    return Envelope(
        body=_dumps({hostname: answer}),
        headers={"ticket": ticket, "clock": clock},
        content_type=JSON_TYPE,
        properties={"delivery_mode": 1},
    )


def decode_reply(envelope: Envelope) -> tuple[str | None, dict[str, Any]]:
    """(ticket, ``{hostname: answer}``) of a reply; raise ValueError when it is not one."""
    body = _json_object(envelope, "control reply")
    ticket = envelope.headers.get("ticket")
    return (ticket if isinstance(ticket, str) else None), body


def expired(request: Request, now: float | None = None) -> bool:
    """Whether the sender gave up waiting before this request arrived."""
    return bool(request.expires) and (now or time.time()) > request.expires


def matches(hostname: str, request: Request) -> bool:
    """Whether ``hostname`` is addressed: by name, by pattern (kombu's matchers) or all."""
    if request.destination:
        return hostname in request.destination
    if request.pattern and request.matcher:
        if request.matcher == "pcre":
            return re.search(request.pattern, hostname) is not None
        if request.matcher == "glob":
            return fnmatch.fnmatch(hostname, request.pattern)
        raise ValueError(f"unknown matcher {request.matcher!r} (glob or pcre)")
    return True


def _json_object(envelope: Envelope, what: str) -> dict[str, Any]:
    if envelope.content_type != JSON_TYPE:
        raise ValueError(f"{what} has content type {envelope.content_type!r}, not JSON")
    try:
        body = json.loads(envelope.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"{what} is a JSON {type(body).__name__}, not an object")
    return body


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
