"""``celeriac report``: what a bug report needs, in the shape of Celery's ``celery report``.

Versions of celeriac, Python and the client libraries, the platform, the broker and
backend URLs with passwords masked, every setting the user set (secrets masked as Celery
masks them), and the ``not supported`` settings among them with the reason each has no
effect.
"""

from __future__ import annotations

import importlib.metadata
import platform
import pprint
import re
from collections.abc import Mapping
from typing import Any

from celeriac._version import __version__
from celeriac.conf.checks import unsupported_in_use
from celeriac.masking import MASK, mask_url

__all__ = ["bug_report", "censor", "humanize", "mask_url"]

_HIDDEN = re.compile(
    "API|TOKEN|KEY|SECRET|PASS|PROFANITIES_LIST|SIGNATURE|DATABASE|BEAT_DBURI", re.IGNORECASE
)
"""Setting names whose values are hidden entirely (Celery's list)."""
_LIBRARIES = (
    "redis", "hiredis", "aio-pika", "aiormq", "sqlalchemy", "psycopg", "msgpack", "orjson",
)  # fmt: skip


def _censored(key: Any, value: Any) -> Any:
    if isinstance(value, Mapping):
        return censor(value)
    if isinstance(key, str) and _HIDDEN.search(key):
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def censor(values: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of ``values`` with secrets masked: by name as Celery does, and URL passwords."""
    return {key: _censored(key, value) for key, value in values.items()}


def humanize(values: Mapping[str, Any]) -> str:
    """One ``name: value`` line per entry, values pretty-printed as Celery prints them."""
    return "\n".join(f"{key}: {pprint.pformat(value, width=50)}" for key, value in values.items())


def _versions() -> str:
    found = []
    for name in _LIBRARIES:
        try:
            found.append(f"{name}:{importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return " ".join(found) or "(no optional client library)"


def _unsupported_lines(conf: Mapping[str, Any]) -> str:
    rows = unsupported_in_use(conf)
    if not rows:
        return "none"
    return "\n".join(f"{row.name}: {row.reason}" for row, _ in rows)


def bug_report(app: Any) -> str:
    """The text of ``celeriac report`` for ``app``."""
    backend = app.result_backend_url
    arch = ", ".join(filter(None, platform.architecture()))
    return (
        f"software -> celeriac:{__version__} py:{platform.python_version()}\n"
        f"            {_versions()}\n"
        f"platform -> system:{platform.system()} arch:{arch}\n"
        f"            kernel version:{platform.release()} imp:{platform.python_implementation()}\n"
        f"app      -> {app.main or '__main__'}\n"
        f"settings -> transport:{mask_url(app.broker_url)}"
        f" results:{mask_url(backend) if backend else 'disabled'}\n\n"
        f"{app.conf.humanize()}\n\n"
        f"not supported settings in use (no effect) ->\n{_unsupported_lines(app.conf)}\n"
    )
