"""``app.amqp``: the queues and router of the app, under Celery's ``app.amqp`` names.

Projects read ``app.amqp.queues`` (the queues a worker consumes by default, by name) and
``app.amqp.router``. Building kombu producers and messages (``producer_pool``,
``send_task_message``, ``Producer``) is not offered: they raise NotImplementedError
naming ``apply_async`` / ``send_task``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac.app.connection import not_offered

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.routing import Router
    from celeriac.transport import QueueSpec

__all__ = ["AMQP"]

_KOMBU_ONLY = frozenset(
    {
        "producer_pool",
        "send_task_message",
        "Producer",
        "Consumer",
        "as_task_v2",
        "create_task_message",
    }
)


class AMQP:
    """The app's messaging view (``app.amqp``)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    @property
    def queues(self) -> dict[str, QueueSpec]:
        """The queues a worker without ``-Q`` consumes, by name (``task_queues`` or the
        default queue)."""
        return {spec.name: spec for spec in self._app.router.consume_specs(None)}

    @property
    def default_queue(self) -> QueueSpec:
        """The queue a task goes to when nothing routes it."""
        return self._app.router.default_queue_spec()

    @property
    def router(self) -> Router:
        """The app's router."""
        return self._app.router

    def __getattr__(self, name: str) -> Any:
        raise not_offered(
            self,
            name,
            _KOMBU_ONLY,
            "celeriac builds no kombu producers or messages;"
            " publish with task.apply_async() or app.send_task()",
        )
