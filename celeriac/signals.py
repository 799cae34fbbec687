"""Celery-named signals: ``@signal.connect`` receivers called with ``sender`` and keywords."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "Signal",
    "after_task_publish",
    "before_task_publish",
    "beat_init",
    "celeryd_init",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_retry",
    "task_revoked",
    "task_success",
    "worker_init",
    "worker_process_init",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class Signal:
    """A named hook; receivers run in connection order, and one failing does not stop the rest."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[tuple[Callable[..., Any], Any]] = []

    def connect(self, receiver: F | None = None, *, sender: Any = None, **_: Any) -> Any:
        """Connect ``receiver``; usable as ``@sig.connect`` or ``@sig.connect(sender=...)``."""
        if receiver is None:

            def decorator(func: F) -> F:
                self._receivers.append((func, sender))
                return func

            return decorator
        self._receivers.append((receiver, sender))
        return receiver

    def disconnect(self, receiver: Callable[..., Any]) -> None:
        """Remove every connection of ``receiver``."""
        self._receivers = [(r, s) for r, s in self._receivers if r is not receiver]

    def send(self, sender: Any = None, **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call receivers (those filtering on another sender are skipped); return their results."""
        if not self._receivers:  # the usual case, on every task's hot path
            return []
        responses: list[tuple[Callable[..., Any], Any]] = []
        for receiver, wanted in list(self._receivers):
            if (
                wanted is not None
                and wanted is not sender
                and wanted != getattr(sender, "name", None)
            ):
                continue
            try:
                responses.append((receiver, receiver(sender=sender, signal=self, **kwargs)))
            except Exception as exc:
                logger.exception("signal %s: receiver %r raised", self.name, receiver)
                responses.append((receiver, exc))
        return responses

    def has_listeners(self) -> bool:
        """Whether any receiver is connected (lets hot paths skip building a send)."""
        return bool(self._receivers)

    @property
    def receivers(self) -> list[Callable[..., Any]]:
        """The connected receivers."""
        return [receiver for receiver, _ in self._receivers]

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_revoked = Signal("task_revoked")
celeryd_init = Signal("celeryd_init")
worker_init = Signal("worker_init")
worker_process_init = Signal("worker_process_init")
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down")
worker_shutdown = Signal("worker_shutdown")
beat_init = Signal("beat_init")
