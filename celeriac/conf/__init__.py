"""Settings under Celery's names: the table of every setting, ``app.conf``, and the checks.

:mod:`celeriac.conf.table` lists each of Celery's settings with its default and what
celeriac does with it; :class:`Settings` is ``app.conf``; :mod:`celeriac.conf.checks`
warns about the settings that have no effect; ``python -m celeriac.conf.reference``
writes ``docs/configuration.md`` from the table.
"""

from celeriac.conf.checks import check_settings
from celeriac.conf.model import IMPLEMENTED, NOT_SUPPORTED, Setting
from celeriac.conf.settings import Settings, normalize_key
from celeriac.conf.table import ALIASES, SETTINGS

__all__ = [
    "ALIASES",
    "IMPLEMENTED",
    "NOT_SUPPORTED",
    "SETTINGS",
    "Setting",
    "Settings",
    "check_settings",
    "normalize_key",
]
