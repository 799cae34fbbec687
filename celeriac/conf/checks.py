"""Nothing accepted and silently ignored: warnings about settings celeriac will not honour.

* A name the table does not know (a typo) is kept, as Celery keeps it, and reported once
  per process with the closest known names (:func:`warn_unknown`).
* At worker, beat and client start (the first publish) :func:`check_settings` reports,
  once per process, each ``not supported`` setting that was given a value other than its
  default, naming it and saying why; and refuses values celeriac cannot work with
  (``task_protocol=1``) with :class:`~celeriac.exceptions.ImproperlyConfigured`.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from celeriac.conf.model import Setting
from celeriac.conf.table import ALIASES, SETTINGS
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import is_registered
from celeriac.worker.jsonlog import check_log_format

__all__ = [
    "check_settings",
    "closest_names",
    "looks_like_celery_name",
    "unsupported_in_use",
    "warn_once",
    "warn_unknown",
]

logger = logging.getLogger("celeriac.conf")

_CELERY_PREFIXES = ("CELERY_", "CELERYD_", "CELERYBEAT_", "BROKER_")
_warned: set[str] = set()
"""Names already reported in this process (forked children inherit it, and stay quiet)."""


def closest_names(name: str) -> list[str]:
    """Up to three known names close to ``name`` (uppercase names are matched with Celery 3's)."""
    known = list(ALIASES) if name.isupper() else list(SETTINGS)
    return difflib.get_close_matches(name, known, n=3, cutoff=0.6)


def looks_like_celery_name(key: str) -> bool:
    """Whether an uppercase settings-file name was meant as a Celery 3 setting name."""
    return key.startswith(_CELERY_PREFIXES)


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log a warning the first time ``key`` comes up in this process."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def warn_unknown(name: str) -> None:
    """Report a setting name the table does not know, with the closest known names."""
    close = closest_names(name)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    warn_once(
        f"unknown:{name}",
        "unknown setting %r: kept, but nothing in celeriac reads it%s",
        name,
        hint,
    )


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)
    except Exception:  # a value whose comparison fails is not the default
        return True


def unsupported_in_use(conf: Mapping[str, Any]) -> list[tuple[Setting, Any]]:
    """Each ``not supported`` setting whose value is not its default, with that value."""
    found = []
    for name, row in SETTINGS.items():
        if not row.supported and name in conf and _differs(conf[name], row.value):
            found.append((row, conf[name]))
    return found


def _protocol_2_only(value: Any) -> str | None:
    if value in (2, "2"):
        return None
    return (
        f"task_protocol={value!r} is not supported: celeriac sends Celery's protocol 2"
        " (Celery 4 and later, which every current worker reads); set task_protocol=2"
    )


def _known_log_format(value: Any) -> str | None:
    try:
        check_log_format(value)
    except ValueError as exc:
        return f"worker_log_format_type: {exc}"
    return None


_REFUSED: dict[str, Callable[[Any], str | None]] = {
    "task_protocol": _protocol_2_only,
    "worker_log_format_type": _known_log_format,
}
"""Settings with values celeriac refuses to start with: name -> value -> error or None."""


_PICKLE = frozenset({"pickle", "application/x-python-serialize"})


def _warn_pickle(conf: Mapping[str, Any]) -> None:
    """Pickle runs code while decoding: say so whenever it is accepted (never by default)."""
    for name in ("accept_content", "result_accept_content"):
        accepted = conf.get(name) or ()
        if isinstance(accepted, str):
            accepted = (accepted,)
        if isinstance(accepted, Collection) and any(
            isinstance(item, str) and item in _PICKLE for item in accepted
        ):
            warn_once(
                f"pickle:{name}",
                "%s accepts pickle: anyone who can write to the broker or the result store "
                "can run any code in this process. Accept pickle only from trusted producers, "
                "or sign messages (task_serializer='auth'; see docs/security.md)",
                name,
            )


def _warn_auth_not_set_up(conf: Mapping[str, Any]) -> None:
    """Signing named in the settings but never set up: nothing signed could be sent or read."""
    accepted = conf.get("accept_content") or ()
    named = conf.get("task_serializer") == "auth" or (
        isinstance(accepted, Collection) and "auth" in accepted
    )
    if named and not is_registered("auth"):
        warn_once(
            "auth:not-set-up",
            "task_serializer or accept_content names 'auth' but app.setup_security() was not "
            "called: signed messages can be neither sent nor verified (see docs/security.md)",
        )


def check_settings(conf: Mapping[str, Any]) -> None:
    """At start: refuse impossible values; warn once about each unsupported setting in use."""
    for name, refuse in _REFUSED.items():
        error = refuse(conf.get(name, SETTINGS[name].value))
        if error is not None:
            raise ImproperlyConfigured(error)
    _warn_pickle(conf)
    _warn_auth_not_set_up(conf)
    for row, value in unsupported_in_use(conf):
        warn_once(
            f"unsupported:{row.name}",
            "setting %s=%r has no effect (%s)",
            row.name,
            value,
            row.reason,
        )
