"""Stamping: custom headers put on every task of a canvas (Celery 5.3's stamping API).

``sig.stamp(visitor=None, append_stamps=False, **headers)`` stamps a signature and, for
a group, chain or chord, every signature inside it, and their callbacks and errbacks. A
:class:`StampingVisitor` decides the stamps per signature (``on_signature``) and per
composite (``on_group_start``, ``on_chain_start``, ``on_chord_header_start``,
``on_chord_body``, ``on_callback``, ``on_errback``); keyword ``headers`` are given to
all of them. A signature keeps its stamps in its options, named by
``options["stamped_headers"]``; when it is published they travel in the message's
``stamps`` and ``stamped_headers`` headers, as Celery sends them, and the task sees them
as ``self.request.stamps`` (with ``result_extended``, the result document has them too).

A stamp given again replaces the earlier value, unless ``append_stamps=True``: then the
values are collected in a list. Revoking by stamp (``revoke_by_stamped_headers``) is
not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["StampingVisitor", "merge_stamps", "stamps_to_options"]


class StampingVisitor:
    """Decides the stamps of each signature of a canvas; override ``on_signature``."""

    def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
        """Stamps for every member of ``group`` (before they are visited)."""
        return {}

    def on_group_end(self, group: Any, **headers: Any) -> None:
        """Called after every member of ``group`` was visited."""

    def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
        """Stamps for every step of ``chain``."""
        return {}

    def on_chain_end(self, chain: Any, **headers: Any) -> None:
        """Called after every step of ``chain`` was visited."""

    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        """Stamps of one task signature."""
        raise NotImplementedError("a StampingVisitor must define on_signature")

    def on_chord_header_start(self, sig: Any, **headers: Any) -> dict[str, Any]:
        """Stamps for the chord's header tasks (by default: ``on_group_start``)."""
        return self.on_group_start(sig.header, **headers)

    def on_chord_header_end(self, sig: Any, **headers: Any) -> None:
        """Called after the header was visited (by default: ``on_group_end``)."""
        self.on_group_end(sig.header, **headers)

    def on_chord_body(self, sig: Any, **headers: Any) -> dict[str, Any]:
        """Stamps for the chord's body."""
        return {}

    def on_callback(self, callback: Any, **headers: Any) -> dict[str, Any]:
        """Stamps for a ``link`` callback."""
        return {}

    def on_errback(self, errback: Any, **headers: Any) -> dict[str, Any]:
        """Stamps for a ``link_error`` errback."""
        return {}


def _combine(old: Any, new: Any, append: bool) -> Any:
    if not append:
        return new
    before = list(old) if isinstance(old, list | tuple) else [old]
    after = list(new) if isinstance(new, list | tuple) else [new]
    return before + [value for value in after if value not in before]


def merge_stamps(
    headers: Mapping[str, Any],
    found: Mapping[str, Any] | None,
    append: bool,
    own: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``headers`` with the stamps a visitor ``found`` and the ``own`` stamps a signature
    already has (its options), and the ``stamped_headers`` list naming them all."""
    out: dict[str, Any] = {}
    names: list[str] = []
    sources = [own or {}, headers, found or {}]
    for source in sources:
        listed = source.get("stamped_headers")
        keys = list(listed) if listed is not None else [k for k in source if k != "stamped_headers"]
        if source is own:
            keys = list(listed or ())
        for key in keys:
            if key not in source:
                continue
            out[key] = _combine(out[key], source[key], append) if key in out else source[key]
            if key not in names:
                names.append(key)
    out["stamped_headers"] = names
    return out


def stamps_to_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Publish options with a signature's stamps moved into the ``stamps`` option (so
    they become message headers, not ``apply_async`` keywords)."""
    names = options.get("stamped_headers")
    if not names:
        return dict(options)
    out = {k: v for k, v in options.items() if k not in names and k != "stamped_headers"}
    out["stamps"] = {**dict(options.get("stamps") or {}), **{n: options.get(n) for n in names}}
    return out
