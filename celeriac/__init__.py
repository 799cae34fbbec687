"""celeriac: a distributed task queue that speaks Celery's language, with an asyncio core.

``from celeriac import Celery`` is the only change a Celery project needs.
"""

from typing import NamedTuple

from celeriac import local, states
from celeriac._version import __version__
from celeriac.app import Celeriac, Celery, bugreport, current_app
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
from celeriac.task import Task, current_task, shared_task
from celeriac.utils import uuid

subtask = signature


class version_info_t(NamedTuple):
    """celeriac's version as a tuple (Celery's ``version_info_t``)."""

    major: int
    minor: int
    micro: int
    releaselevel: str
    serial: str


def _version_tuple(text: str) -> version_info_t:
    major, minor, micro = (int(part) for part in text.split(".")[:3])
    return version_info_t(major, minor, micro, "", "")


SERIES = "celeriac"
VERSION = version_info = _version_tuple(__version__)
"""celeriac's own version, not Celery's: code that compares it with Celery's versions
must compare ``celery.VERSION`` instead."""
VERSION_BANNER = f"{__version__} ({SERIES})"


__all__ = [
    "SERIES",
    "VERSION",
    "VERSION_BANNER",
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
    "bugreport",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "local",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "version_info",
    "version_info_t",
    "xmap",
    "xstarmap",
]
