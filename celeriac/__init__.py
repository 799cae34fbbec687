"""celeriac: a distributed task queue that speaks Celery's language, with an asyncio core.

``from celeriac import Celery`` is the only change a Celery project needs.
"""

from celeriac import states
from celeriac._version import __version__
from celeriac.app import Celeriac, Celery, current_app
from celeriac.canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    xmap,
    xstarmap,
)
from celeriac.result import AsyncResult, EagerResult, GroupResult, ResultSet
from celeriac.routing import Exchange, Queue
from celeriac.task import Task, shared_task

__all__ = [
    "AsyncResult",
    "Celeriac",
    "Celery",
    "EagerResult",
    "Exchange",
    "GroupResult",
    "Queue",
    "ResultSet",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "xmap",
    "xstarmap",
]
