"""``ExceptionInfo``: what ``on_failure``, ``on_retry`` and ``task_failure`` receive as ``einfo``.

It has the surface of Celery's (``billiard.einfo.ExceptionInfo``) that handlers use:
``exception``, ``type``, ``tb``, ``traceback`` (the formatted text), ``exc_info`` and
``internal``; ``str(einfo)`` is the formatted traceback.
"""

from __future__ import annotations

import sys
import traceback as tb
from types import TracebackType

__all__ = ["ExceptionInfo"]


class ExceptionInfo:
    """One exception with its traceback, as a task's failure handlers see it."""

    def __init__(
        self,
        exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None,
        internal: bool = False,
        *,
        text: str | None = None,
    ) -> None:
        if exc_info is None:
            current = sys.exc_info()
            if current[1] is None:
                raise ValueError("ExceptionInfo() needs exc_info outside an except block")
            exc_info = (type(current[1]), current[1], current[2])
        self.type: type[BaseException] = exc_info[0]
        self.exception: BaseException = exc_info[1]
        self.tb: TracebackType | None = exc_info[2]
        self.internal = internal
        self.traceback: str = text if text is not None else "".join(tb.format_exception(*exc_info))
        """The formatted traceback (``text`` when the caller trimmed it already)."""

    @classmethod
    def from_exception(cls, exc: BaseException, text: str | None = None) -> ExceptionInfo:
        """The info of an exception caught earlier (its ``__traceback__`` is kept)."""
        return cls((type(exc), exc, exc.__traceback__), text=text)

    @property
    def exc_info(self) -> tuple[type[BaseException], BaseException, TracebackType | None]:
        """``(type, exception, traceback)`` as ``sys.exc_info()`` gives them."""
        return self.type, self.exception, self.tb

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"
