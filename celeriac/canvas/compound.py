"""The shape shared by ``chain`` and ``group``: a signature made of other signatures.

Both keep their parts in ``kwargs["tasks"]``, as Celery puts them on the wire, and
turn them back into signatures when read from a dict.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.signature import Signature, as_signature

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["Compound"]


class Compound(Signature):
    """A signature whose ``kwargs["tasks"]`` are signatures (the steps or the members)."""

    @classmethod
    def _from_items(cls, data: Mapping[str, Any], app: Celery | None) -> Signature:
        sig = super()._from_items(data, app)
        sig["kwargs"]["tasks"] = [as_signature(t, app) for t in sig["kwargs"].get("tasks") or ()]
        return sig

    @property
    def tasks(self) -> list[Signature]:
        """The signatures this one is made of, in order."""
        tasks: list[Signature] = self["kwargs"].setdefault("tasks", [])
        return tasks

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A deep copy; ``args`` become partial args, applied as the subclass documents."""
        sig = copy.deepcopy(self)
        if args and not sig.immutable:
            sig["args"] = [*args, *sig.args]
        sig["options"] = {**sig.options, **options}
        return sig
