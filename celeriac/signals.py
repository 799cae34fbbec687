"""Celery's signals, by Celery's names and arguments: ``@signal.connect`` receivers.

A :class:`Signal` behaves as ``celery.utils.dispatch.Signal``: receivers are held by weak
reference unless ``weak=False``; ``dispatch_uid`` (or the receiver itself) identifies a
connection, so connecting twice connects once; ``sender=`` only lets through sends whose
sender is that object (a string sender is compared by value, anything else by identity);
a receiver that raises is logged and its exception returned among the responses, and the
others still run. ``docs/signals.md`` says when each one is sent.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from celeriac.retry import RetryPolicy

__all__ = [
    "Signal",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "beat_embedded_init",
    "beat_init",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "eventlet_pool_apply",
    "eventlet_pool_postshutdown",
    "eventlet_pool_preshutdown",
    "eventlet_pool_started",
    "heartbeat_sent",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_sent",
    "task_success",
    "task_unknown",
    "user_preload_options",
    "worker_before_create_process",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]

logger = logging.getLogger("celeriac.signals")

Receiver = Callable[..., Any]
Key = tuple[Hashable, Hashable]

RECEIVER_RETRY = RetryPolicy(first=2.0, factor=2.0, max_delay=30.0, max_retries=None)
"""How a receiver connected with ``retry=True`` is retried: until it succeeds."""


def _sender_id(sender: Any) -> Hashable:
    """What identifies a sender: a string (or bytes) by value, anything else by identity."""
    if isinstance(sender, str | bytes):
        return sender
    if hasattr(sender, "__func__"):  # bound methods are new objects on every access
        return (id(getattr(sender, "__self__", None)), id(sender.__func__))
    return id(sender)


def _accepts_kwargs(fun: Receiver) -> bool:
    try:
        parameters = inspect.signature(fun).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class Signal:
    """A named hook that senders send to and receivers connect to.

    ``Signal(providing_args=..., use_caching=..., name=...)`` as Celery's; ``name`` may also
    be given alone as the first argument.
    """

    def __init__(
        self,
        providing_args: Iterable[str] | str | None = None,
        use_caching: bool = False,
        name: str | None = None,
    ) -> None:
        if isinstance(providing_args, str):  # Signal("name")
            name, providing_args = providing_args, None
        self.name = name
        self.providing_args: set[str] = set(providing_args or ())
        self.use_caching = use_caching  # accepted; lookups are cheap enough without a cache
        self.lock = threading.Lock()
        self._receivers: list[tuple[Key, Receiver | weakref.ref[Any]]] = []
        self._dead = False

    # connecting -------------------------------------------------------------------------
    def connect(self, *args: Any, **kwargs: Any) -> Any:
        """Connect a receiver: ``sig.connect(fun, sender=None, weak=True, dispatch_uid=None,
        retry=False)``, or as a decorator ``@sig.connect`` / ``@sig.connect(sender=...)``.

        The receiver must accept ``**kwargs`` (ValueError otherwise). With ``retry=True`` a
        receiver that raises is called again, with a growing pause, until it succeeds
        (it is then held strongly).
        """
        if args and callable(args[0]):
            return self._connect_options(*args[1:], **kwargs)(args[0])
        return self._connect_options(*args, **kwargs)

    def _connect_options(
        self,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        retry: bool = False,
    ) -> Callable[[Receiver], Receiver]:
        def connect(fun: Receiver) -> Receiver:
            receiver, uid, is_weak = fun, dispatch_uid, weak
            if retry:
                uid = uid or _sender_id(fun)
                receiver, is_weak = _retrying(fun), False
            self._connect(receiver, sender, is_weak, uid)
            return receiver

        return connect

    def _connect(
        self, receiver: Receiver, sender: Any, weak: bool, dispatch_uid: Hashable | None
    ) -> None:
        if not callable(receiver):
            raise TypeError(f"signal {self.name}: receiver {receiver!r} is not callable")
        if not _accepts_kwargs(receiver):
            raise ValueError(
                f"signal {self.name}: receiver {receiver!r} must accept keyword arguments "
                "(add **kwargs)"
            )
        key = _lookup_key(receiver, sender, dispatch_uid)
        held: Receiver | weakref.ref[Any] = receiver
        if weak:
            owner = getattr(receiver, "__self__", None)
            if owner is not None and hasattr(receiver, "__func__"):
                held = weakref.WeakMethod(receiver)
                weakref.finalize(owner, self._mark_dead)
            else:
                held = weakref.ref(receiver)
                weakref.finalize(receiver, self._mark_dead)
        with self.lock:
            self._drop_dead()
            if all(existing != key for existing, _ in self._receivers):
                self._receivers.append((key, held))

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: Any = None,
        weak: bool | None = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect what ``connect`` connected with the same receiver (or ``dispatch_uid``)
        and sender; whether something was connected."""
        key = _lookup_key(receiver, sender, dispatch_uid)
        with self.lock:
            self._drop_dead()
            for index, (existing, _) in enumerate(self._receivers):
                if existing == key:
                    del self._receivers[index]
                    return True
        return False

    # sending ----------------------------------------------------------------------------
    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every live receiver for ``sender``; ``[(receiver, response or exception)]``."""
        if not self._receivers:  # the usual case, on every task's hot path
            return []
        responses: list[tuple[Receiver, Any]] = []
        for receiver in self._live_receivers(sender):
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as exc:
                logger.exception("Signal handler %r raised: %r", receiver, exc)
                responses.append((receiver, exc))
        return responses

    send_robust = send  # Django's name; Celery's are the same

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from ``sender`` would reach any receiver (lets hot paths skip it)."""
        return bool(self._receivers) and bool(self._live_receivers(sender))

    @property
    def receivers(self) -> list[tuple[Key, Receiver | weakref.ref[Any]]]:
        """The connections, as Celery keeps them: ``[(lookup key, receiver or weakref)]``."""
        return self._receivers

    def _live_receivers(self, sender: Any) -> list[Receiver]:
        wanted = _sender_id(sender)
        none = _sender_id(None)
        live: list[Receiver] = []
        with self.lock:
            self._drop_dead()
            connected = list(self._receivers)
        for (_, sender_key), held in connected:
            if sender_key != none and sender_key != wanted:
                continue
            receiver = held() if isinstance(held, weakref.ref) else held
            if receiver is not None:
                live.append(receiver)
        return live

    def _mark_dead(self) -> None:
        # Called from garbage collection, maybe while the lock is held: only flag it.
        self._dead = True

    def _drop_dead(self) -> None:
        if self._dead:
            self._dead = False
            self._receivers = [
                (key, held)
                for key, held in self._receivers
                if not (isinstance(held, weakref.ref) and held() is None)
            ]

    def __repr__(self) -> str:
        return f"<Signal: {self.name} providing_args={self.providing_args!r}>"

    __str__ = __repr__


def _lookup_key(receiver: Any, sender: Any, dispatch_uid: Hashable | None) -> Key:
    if dispatch_uid:
        return (dispatch_uid, _sender_id(sender))
    own_uid = getattr(receiver, "_dispatch_uid", None)  # a retry=True wrapper
    return (own_uid or _sender_id(receiver), _sender_id(sender))


def _retrying(fun: Receiver) -> Receiver:
    """``fun``, called again after a pause (forever) while it raises."""

    def retrying(*args: Any, **kwargs: Any) -> Any:
        return RECEIVER_RETRY.call_blocking(
            lambda: fun(*args, **kwargs),
            retry_on=(Exception,),
            what=f"signal receiver {fun!r}",
            give_up=lambda exc, _attempts: exc,
        )

    retrying._dispatch_uid = _sender_id(fun)  # type: ignore[attr-defined]
    return retrying


def _signal(name: str, *args: str) -> Signal:
    return Signal(name=name, providing_args=args)


# Tasks: client side
before_task_publish = _signal(
    "before_task_publish",
    "body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy",
)  # fmt: skip
after_task_publish = _signal("after_task_publish", "body", "exchange", "routing_key")
task_sent = _signal("task_sent", "task_id", "task", "args", "kwargs", "eta", "taskset")
"""Deprecated in Celery (use ``after_task_publish``); sent after it, when connected."""

# Tasks: worker side
task_received = _signal("task_received", "request")
task_prerun = _signal("task_prerun", "task_id", "task", "args", "kwargs")
task_postrun = _signal("task_postrun", "task_id", "task", "args", "kwargs", "retval")
task_success = _signal("task_success", "result", "runtime")
task_retry = _signal("task_retry", "request", "reason", "einfo")
task_failure = _signal(
    "task_failure", "task_id", "exception", "args", "kwargs", "traceback", "einfo"
)
task_internal_error = _signal(
    "task_internal_error",
    "task_id", "args", "kwargs", "request", "exception", "traceback", "einfo",
)  # fmt: skip
task_revoked = _signal("task_revoked", "request", "terminated", "signum", "expired")
task_rejected = _signal("task_rejected", "message", "exc")
task_unknown = _signal("task_unknown", "message", "exc", "name", "id")

# The worker program and the worker
celeryd_init = _signal("celeryd_init", "instance", "conf", "options")
celeryd_after_setup = _signal("celeryd_after_setup", "instance", "conf")
import_modules = _signal("import_modules")
worker_init = _signal("worker_init")
worker_before_create_process = _signal("worker_before_create_process")
worker_process_init = _signal("worker_process_init")
worker_process_shutdown = _signal("worker_process_shutdown")
worker_ready = _signal("worker_ready")
worker_shutdown = _signal("worker_shutdown")
worker_shutting_down = _signal("worker_shutting_down")
heartbeat_sent = _signal("heartbeat_sent")

# Logging
setup_logging = _signal("setup_logging", "loglevel", "logfile", "format", "colorize")
after_setup_logger = _signal(
    "after_setup_logger", "logger", "loglevel", "logfile", "format", "colorize"
)
after_setup_task_logger = _signal(
    "after_setup_task_logger", "logger", "loglevel", "logfile", "format", "colorize"
)

# Beat
beat_init = _signal("beat_init")
beat_embedded_init = _signal("beat_embedded_init")

# Eventlet: celeriac has no eventlet pool, so these are never sent (see docs/signals.md)
eventlet_pool_started = _signal("eventlet_pool_started")
eventlet_pool_preshutdown = _signal("eventlet_pool_preshutdown")
eventlet_pool_postshutdown = _signal("eventlet_pool_postshutdown")
eventlet_pool_apply = _signal("eventlet_pool_apply", "target", "args", "kwargs")

# Programs
user_preload_options = _signal("user_preload_options", "app", "options")
