"""``xmap``, ``xstarmap`` and ``chunks``: one task applied over many argument sets.

* ``xmap(add.s(), [1, 2])`` is one ``celery.map`` task calling ``add(1)``, ``add(2)``
  in the worker and returning the list of results.
* ``xstarmap(add.s(), [(1, 2), (3, 4)])`` is one ``celery.starmap`` task calling
  ``add(1, 2)``, ``add(3, 4)``.
* ``chunks(add.s(), it, n)`` splits ``it`` into parts of ``n`` and applies a group
  of ``celery.starmap`` tasks; ``.group()`` gives that group.

The wire dicts are Celery's: task ``celery.map``/``celery.starmap``/``celery.chunks``,
kwargs ``{"task": sig, "it": [...]}`` (``"n"`` for chunks), immutable, and
``subtask_type`` null; the built-in tasks (``celeriac.canvas.builtins``) run them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.group import group
from celeriac.canvas.signature import Dispatch, Signature, signatures

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["chunks", "split", "xmap", "xstarmap"]


def split(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive parts of at most ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


class xmap(Signature):
    """One ``celery.map`` task: the task called with each item of ``it``."""

    builtin = "celery.map"

    def __init__(
        self, task: Any, it: Iterable[Any], app: Celery | None = None, **options: Any
    ) -> None:
        sig = signatures([task], app)[0]
        structure = {"task": sig, "it": list(it)}
        super().__init__(self.builtin, (), structure, options, immutable=True, app=app or sig._app)


class xstarmap(xmap):
    """One ``celery.starmap`` task: the task called with ``*item`` for each item."""

    builtin = "celery.starmap"


class chunks(Signature):
    """``it`` split into parts of ``n``, each part one ``celery.starmap`` task of a group."""

    def __init__(
        self, task: Any, it: Iterable[Any], n: int, app: Celery | None = None, **options: Any
    ) -> None:
        sig = signatures([task], app)[0]
        structure = {"task": sig, "it": [list(item) for item in it], "n": int(n)}
        super().__init__(
            "celery.chunks", (), structure, options, immutable=True, app=app or sig._app
        )

    def group(self) -> group:
        """The group of ``celery.starmap`` tasks this applies."""
        structure = self["kwargs"]
        task, size = structure["task"], int(structure["n"])
        parts = split(list(structure["it"]), size)
        return group(
            [xstarmap(task, part, app=self._app) for part in parts], app=self._app, **self.options
        )

    def ends_in_group(self) -> bool:
        """Chunks apply a group."""
        return True

    def _emit(
        self,
        dispatch: Dispatch,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        return self.group()._emit(dispatch, args, kwargs, options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run every part here; a GroupResult of the parts' lists."""
        return self.group().apply(args, kwargs, **options)

    def __call__(self, **options: Any) -> Any:
        """Apply the chunks (Celery's ``chunks(...)()``)."""
        return self.apply_async((), **options)
