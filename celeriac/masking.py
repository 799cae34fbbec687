"""Passwords out of everything celeriac shows: log lines, banners, errors.

:func:`mask_url` replaces the password of each ``scheme://user:password@`` in a text (a
URL, or a message holding URLs, such as a connection error). :func:`install` makes every
log record of the process go through it: the message, its arguments and the traceback of
an exception, whichever library logged it. The worker, beat and the other commands install
it at start; a program embedding celeriac can call it too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["MASK", "install", "mask_url"]

MASK = "********"
_CREDENTIALS = re.compile(r"(?P<scheme>[\w+.-]+://)(?P<user>[^:@/;\s]*):(?P<password>[^@/;\s]*)@")


def mask_url(text: str, mask: str = MASK) -> str:
    """``text`` with the password of each ``scheme://user:password@`` part replaced by
    ``mask`` (Celery's banner shows ``**``, its report ``********``)."""
    if "://" not in text:
        return text  # the usual case: nothing to look for
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{mask}@", text)


_installed: list[Any] = []


def install() -> None:
    """Mask URL passwords in every log record made from now on (idempotent)."""
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = mask_url(message), ()
        if record.exc_info and not record.exc_text:
            # Formatted now, so that the traceback (which may hold a URL) is masked too.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_url(text)
        return record

    _installed.append(masked_record)
    logging.setLogRecordFactory(masked_record)
