"""Exceptions raised by celeriac.

The hierarchy::

    CeleriacError
    ├── ImproperlyConfigured        a setting or option is wrong
    ├── MissingDependency           an optional client library is not installed
    ├── NotRegistered               no task of that name in the registry (KeyError too)
    ├── MessageError                a message cannot be decoded (dead-lettered by workers)
    │   └── ContentDisallowed       its content type is not in accept_content
    ├── SerializationError          arguments or a result cannot be serialized
    │   └── SecurityError           a signature is wrong, or a key or certificate unusable
    ├── TimeoutError                AsyncResult.get() waited too long (builtins.TimeoutError too)
    ├── OperationalError            a broker or result store stayed unreachable through the
    │                               retries (builtins.ConnectionError too, and kombu's
    │                               OperationalError when kombu is installed)
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

``OperationalError`` is also ``kombu.exceptions.OperationalError`` when kombu can be imported
(Celery code catches that one): creating one makes an instance of a subclass of both, built
when the first is raised, so that importing celeriac does not import kombu (85 ms) and kombu
stays optional.

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
    "OperationalError",
    "QueueNotFound",
    "Reject",
    "RemoteError",
    "Retry",
    "SecurityError",
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


class OperationalError(CeleriacError, builtins.ConnectionError):
    """A broker or result store could not be reached through every retry the policy allows.

    The message names the server with its password masked; ``__cause__`` is the last
    error of the client library. With kombu installed, every instance is also a
    ``kombu.exceptions.OperationalError`` (see the module docstring).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> OperationalError:
        """An instance of the kombu-compatible twin of ``cls``, when kombu is installed."""
        return super().__new__(_kombu_compatible(cls), *args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # The twin is built at run time: unpickle through the class it was built from.
        return (_KOMBU_ORIGINS.get(type(self), type(self)), self.args)


_KOMBU_TWINS: dict[type[OperationalError], type[OperationalError]] = {}
_KOMBU_ORIGINS: dict[type[OperationalError], type[OperationalError]] = {}


def _kombu_compatible(cls: type[OperationalError]) -> type[OperationalError]:
    """``cls`` made a subclass of kombu's OperationalError too (``cls`` itself without
    kombu, or when it already is one)."""
    twin = _KOMBU_TWINS.get(cls)
    if twin is None:
        try:
            from kombu.exceptions import (  # noqa: PLC0415 - optional, 85 ms: on first use
                OperationalError as KombuOperationalError,
            )
        except ImportError:
            twin = cls
        else:
            if issubclass(cls, KombuOperationalError):
                twin = cls
            else:
                twin = type(
                    cls.__name__,
                    (cls, KombuOperationalError),
                    {"__module__": cls.__module__, "__doc__": cls.__doc__},
                )
                twin.__qualname__ = cls.__qualname__
                _KOMBU_ORIGINS[twin] = cls
        _KOMBU_TWINS[cls] = twin
    return twin


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


class SecurityError(SerializationError):
    """Message signing failed: a bad or missing signature, an unknown or expired certificate,
    or a key or certificate that cannot be used (Celery's ``SecurityError``)."""
