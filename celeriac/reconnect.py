"""The reconnect policy of every connection, from Celery's settings.

One policy shape (:class:`~celeriac.retry.RetryPolicy`) for the broker's transport, the
result store, the beat store and the event and control connections; this module turns
Celery's settings into it. An engine reads the policy from its options, so the settings
are added to ``broker_transport_options`` / ``result_backend_transport_options`` (by
:mod:`celeriac.engines.options`) under the option names :meth:`RetryPolicy.from_options`
reads; options the user gave win.

=========================================== ==============================================
setting                                     effect
=========================================== ==============================================
``broker_connection_retry`` (True)          False: a lost broker connection is not retried
``broker_connection_max_retries`` (100)     attempts after a failure; 0 or None: no limit
``broker_connection_retry_on_startup``      the first connection (worker start, first
                                            publish); None follows ``broker_connection_retry``
``broker_connection_timeout`` (4 s)         each attempt to open a connection
``result_backend_always_retry`` (False)     True: retry up to ``result_backend_max_retries``
                                            with no time limit
``result_backend_max_retries`` (inf)        attempts when ``result_backend_always_retry``
``task_publish_retry`` (True)               False: a failed publish raises at once
``task_publish_retry_policy``               Celery's ``max_retries``, ``interval_start``,
                                            ``interval_step``, ``interval_max``
=========================================== ==============================================

The defaults ride out an outage shorter than a lease (:data:`LEASE`, 30 s, or the
transport's ``lease_timeout``): an operation that fails is retried for that long before
it gives up, so a worker keeps its finished tasks' acks and results and writes them when
the server is back instead of letting them be redelivered. Past that, callers raise
:class:`~celeriac.exceptions.OperationalError`, which names the server with its password
masked (:func:`unreachable`).

Loops that live across outages (beat and its store, the event dispatcher, the control
mailbox) keep retrying and report each outage with an :class:`Outage`: one warning when it
begins ("... unreachable, retrying ..."), one error if it outlasts the policy's deadline,
and one line when it ends ("... back after N s").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from celeriac.exceptions import ImproperlyConfigured, OperationalError
from celeriac.masking import mask_url
from celeriac.retry import RetryPolicy

__all__ = [
    "CONNECTION_MAX_DELAY",
    "LEASE",
    "Outage",
    "backend_retry_options",
    "broker_retry_options",
    "publish_policy",
    "unreachable",
]

LEASE = 30.0
"""Seconds a worker's hold on its messages lasts without a heartbeat (the engines' default
``lease_timeout``): the longest a failed write is worth retrying for."""
CONNECTION_MAX_DELAY = 1.0
"""Longest wait between two attempts while riding out an outage (a second: the worker is
back within a second of the server)."""
STARTUP_MAX_DELAY = 2.0
"""Longest wait between two attempts of a first connection."""


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in {"", "0", "false", "no", "off"}
    return bool(value)


def _number(value: Any, name: str) -> float:
    """A number from the settings, or ImproperlyConfigured naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}")
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from exc


def _limit(value: Any, name: str) -> int | None:
    """A retry count: None, 0 or infinity mean no limit."""
    if value is None:
        return None
    count = _number(value, name)
    return None if math.isinf(count) or count <= 0 else int(count)


def broker_retry_options(conf: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The retry options of a broker connection, from Celery's ``broker_connection_*``."""
    lease = float(options.get("lease_timeout") or LEASE)
    retry = _flag(conf.get("broker_connection_retry"), True)
    on_startup = _flag(conf.get("broker_connection_retry_on_startup"), retry)
    limit = _limit(conf.get("broker_connection_max_retries", 100), "broker_connection_max_retries")
    found: dict[str, Any] = {
        "max_retries": limit if retry else 0,
        "retry_backoff_max": CONNECTION_MAX_DELAY,
        "retry_deadline": lease,
        "connect_max_retries": limit if on_startup else 0,
        "connect_retry_backoff_max": STARTUP_MAX_DELAY,
        "connect_retry_deadline": None,
    }
    timeout = conf.get("broker_connection_timeout")
    if timeout is not None:
        found["connect_timeout"] = _number(timeout, "broker_connection_timeout")
    return found


def backend_retry_options(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The retry options of a result store, from Celery's ``result_backend_*`` settings."""
    if _flag(conf.get("result_backend_always_retry"), False):
        limit = _limit(
            conf.get("result_backend_max_retries", math.inf), "result_backend_max_retries"
        )
        return {"max_retries": limit, "retry_deadline": None}
    return {"max_retries": None, "retry_deadline": LEASE}


def publish_policy(
    conf: Mapping[str, Any], retry: Any = None, policy: Mapping[str, Any] | None = None
) -> RetryPolicy | None:
    """How one publish is retried (``apply_async``'s ``retry``/``retry_policy`` over the
    ``task_publish_retry*`` settings), or None when it is not."""
    if not _flag(retry, _flag(conf.get("task_publish_retry"), True)):
        return None
    merged = dict(conf.get("task_publish_retry_policy") or {})
    if policy is not None and not isinstance(policy, Mapping):
        raise TypeError(f"retry_policy must be a mapping, not {type(policy).__name__}")
    merged.update(policy or {})
    count = merged.get("max_retries", 3)  # as kombu: None retries for ever, 0 never
    start = _number(merged.get("interval_start", 0) or 0, "retry_policy interval_start")
    step = _number(merged.get("interval_step", 0.2) or 0, "retry_policy interval_step")
    maximum = _number(merged.get("interval_max", 1) or 0, "retry_policy interval_max")
    return RetryPolicy(
        first=min(start, maximum),
        factor=1.0,
        step=step,
        max_delay=_last_step(start, step, maximum),
        max_retries=None if count is None else int(_number(count, "retry_policy max_retries")),
    )


def _last_step(start: float, step: float, maximum: float) -> float:
    """The longest wait of kombu's ``retry_over_time``: its waits grow by ``step`` from
    ``start`` while they stay within ``maximum + start``, then repeat the last (capped at
    ``maximum``)."""
    if step <= 0:
        return min(start, maximum)
    value, limit = start, maximum + start
    for _ in range(100_000):  # a bound for absurd settings (a tiny step)
        if value + step > limit:
            break
        value += step
    return min(value, maximum)


def unreachable(url: str, what: str, exc: BaseException, attempts: int) -> OperationalError:
    """The error raised once ``what`` against ``url`` failed ``attempts`` times."""
    return OperationalError(
        f"{what} at {mask_url(url)} failed after {attempts} attempts: {mask_url(str(exc))}"
    )


class Outage:
    """The log of one connection's outages: each is reported once, not once per attempt.

    :meth:`failed` after each failed attempt, :meth:`ok` after each success. The first
    failure logs "``what`` unreachable, retrying"; a failure past ``deadline`` seconds
    (the policy's; None: never) logs once at error level that it still is; the first
    success after failures logs "``what`` back after N s". ``what`` should name the
    server with its password masked.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        deadline: float | None = LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.deadline = deadline
        self.clock = clock
        self.since: float | None = None
        """When the current outage began (``clock`` seconds); None while connected."""
        self.failures = 0
        self._escalated = False

    @property
    def down(self) -> bool:
        """Whether the last attempt failed."""
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        """Note a failed attempt; log the start of an outage, or that it is too long."""
        now = self.clock()
        self.failures += 1
        if self.since is None:
            self.since = now
            self.logger.warning(
                "%s unreachable, retrying (%s)", self.what, mask_url(str(exc) or repr(exc))
            )
            return
        if self.deadline is not None and not self._escalated and now - self.since > self.deadline:
            self._escalated = True
            self.logger.error(
                "%s still unreachable after %.0f s (%d attempts); still retrying: %s",
                self.what,
                now - self.since,
                self.failures,
                mask_url(str(exc) or repr(exc)),
            )

    def ok(self) -> float | None:
        """Note a success; the outage's length in seconds if one just ended (logged)."""
        if self.since is None:
            return None
        lasted = self.clock() - self.since
        self.logger.warning("%s back after %.1f s", self.what, lasted)
        self.since, self.failures, self._escalated = None, 0, False
        return lasted
