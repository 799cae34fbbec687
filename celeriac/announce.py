"""What a client tells the publish signals, with Celery's arguments.

``before_task_publish`` gets the message's real headers and properties (changes made by a
receiver are published), the body as the ``(args, kwargs, embed)`` tuple of protocol 2 (a
copy: the body is already serialized), the exchange and routing key, the queues to declare
and the retry policy. ``after_task_publish`` follows the publish; the deprecated
``task_sent`` follows it when it has receivers. Clients and workers (for the retries they
publish) send them through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac import signals
from celeriac.protocol.envelope import Envelope

if TYPE_CHECKING:
    from celeriac.publishing import PublishRequest

__all__ = ["announce_publish", "announce_published"]


def _body(req: PublishRequest) -> tuple[Any, ...]:
    msg = req.message
    embed = {
        "callbacks": msg.callbacks,
        "errbacks": msg.errbacks,
        "chain": msg.chain,
        "chord": msg.chord,
    }
    return (msg.args, msg.kwargs, embed)


def announce_publish(app: Any, req: PublishRequest, envelope: Envelope) -> None:
    """Send ``before_task_publish`` for a request about to be published as ``envelope``."""
    if not signals.before_task_publish.receivers:  # the usual case: nothing to build
        return
    envelope.plain = False  # a receiver may put anything in the headers
    signals.before_task_publish.send(
        sender=req.message.task,
        body=_body(req),
        exchange=req.route.exchange,
        routing_key=req.route.routing_key,
        declare=[req.route.queue] if req.route.queue is not None else [],
        headers=envelope.headers,
        properties=envelope.properties,
        retry_policy=dict(app.conf["task_publish_retry_policy"] or {}),
    )


def announce_published(req: PublishRequest, envelope: Envelope) -> None:
    """Send ``after_task_publish`` (and the deprecated ``task_sent``) for a published request."""
    if not (signals.after_task_publish.receivers or signals.task_sent.receivers):
        return
    body = _body(req)
    signals.after_task_publish.send(
        sender=req.message.task,
        body=body,
        headers=envelope.headers,
        exchange=req.route.exchange,
        routing_key=req.route.routing_key,
    )
    if signals.task_sent.receivers:
        headers = envelope.headers
        signals.task_sent.send(
            sender=req.message.task,
            task_id=headers["id"],
            task=req.message.task,
            args=body[0],
            kwargs=body[1],
            eta=headers.get("eta"),
            taskset=headers.get("group"),
        )
