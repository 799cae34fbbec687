"""Exceptions raised by celeriac.

The hierarchy::

    CeleriacError
    ├── ImproperlyConfigured        a setting or option is wrong
    ├── MissingDependency           an optional client library is not installed
    ├── NotRegistered               no task of that name in the registry (KeyError too)
    ├── MessageError                a message cannot be decoded (dead-lettered by workers)
    │   └── ContentDisallowed       its content type is not in accept_content
    ├── SerializationError          arguments or a result cannot be serialized
    ├── TimeoutError                AsyncResult.get() waited too long (builtins.TimeoutError too)
    ├── TaskError                   raised inside tasks or by the worker about a task
    │   ├── Retry                   raised by Task.retry() to ask for a retry
    │   ├── Ignore                  the task asks the worker to forget it
    │   ├── Reject                  the task asks the worker to reject its message
    │   ├── MaxRetriesExceededError
    │   ├── TaskRevokedError
    │   ├── TimeLimitExceeded       hard limit: the task's process was killed
    │   ├── WorkerLostError         the process running the task died
    │   └── ChordError              a chord's header failed
    └── RemoteError                 a task failed with an exception type we cannot import here

``SoftTimeLimitExceeded`` derives from ``Exception`` directly (as in Celery) so that
a task's broad ``except Exception`` can still catch it to clean up.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "CeleriacError",
    "ChordError",
    "ContentDisallowed",
    "Ignore",
    "ImproperlyConfigured",
    "IncompleteStream",
    "MaxRetriesExceededError",
    "MessageError",
    "MissingDependency",
    "NotRegistered",
    "QueueNotFound",
    "Reject",
    "RemoteError",
    "Retry",
    "SerializationError",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]


class CeleriacError(Exception):
    """Base class of every celeriac error."""


class ImproperlyConfigured(CeleriacError):
    """A setting, URL or task option is invalid."""


class MissingDependency(CeleriacError, ImportError):
    """An optional client library is missing; the message says which extra to install."""


class NotRegistered(CeleriacError, KeyError):
    """No task with this name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not registered"


class MessageError(CeleriacError):
    """A message could not be decoded; workers dead-letter such messages."""


class ContentDisallowed(MessageError):
    """The message's content type is not in ``accept_content``."""


class SerializationError(CeleriacError):
    """A value could not be serialized or deserialized."""


class TimeoutError(CeleriacError, builtins.TimeoutError):
    """Waiting for a result took longer than the timeout."""


class TaskError(CeleriacError):
    """Base class of errors about a task's execution."""


class QueueNotFound(TaskError, KeyError):
    """A task was sent to (or a worker told to consume) a queue missing from ``task_queues``
    while ``task_create_missing_queues`` is False (Celery's ``QueueNotFound``)."""


class Retry(TaskError):
    """Raised by ``Task.retry()``: the worker re-sends the task and records RETRY."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | None = None,
        **_: Any,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        super().__init__(message or (repr(exc) if exc is not None else "retry"))

    def humanize(self) -> str:
        """Describe when the retry will run."""
        return f"in {self.when}s" if self.when is not None else "now"


class Ignore(TaskError):
    """The task asks the worker not to record any state for this run."""


class Reject(TaskError):
    """The task asks the worker to reject its message (optionally requeueing it)."""

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class IncompleteStream(TaskError):
    """A walk over a result graph met a result that is not ready yet."""


class MaxRetriesExceededError(TaskError):
    """The task asked for a retry but has used up ``max_retries``."""


class TaskRevokedError(TaskError):
    """The task was revoked (by a user, or because it expired)."""


class TimeLimitExceeded(TaskError):
    """The hard time limit was reached and the task's process was killed."""


class WorkerLostError(TaskError):
    """The process running the task exited before reporting a result."""


class ChordError(TaskError):
    """A task in a chord's header failed, so the body cannot run."""


class SoftTimeLimitExceeded(Exception):
    """The soft time limit was reached; raised inside the task so it can clean up."""


class RemoteError(CeleriacError):
    """A task failed with an exception whose type cannot be imported here.

    ``exc_type`` and ``exc_module`` name the original type; ``str()`` gives its message.
    """

    def __init__(self, exc_type: str, exc_module: str | None, exc_message: Any) -> None:
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.exc_message = exc_message
        super().__init__(exc_type, exc_message)

    def __str__(self) -> str:
        where = f"{self.exc_module}.{self.exc_type}" if self.exc_module else self.exc_type
        msg = self.exc_message
        if isinstance(msg, list | tuple):
            msg = ", ".join(str(part) for part in msg)
        return f"{where}: {msg}"
