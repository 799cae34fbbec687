"""The memory engine's URLs, and the stores they name in this process.

``memory://`` and ``memory://name`` name a store; every role of the engine (broker,
results, beat) keeps its stores in a :class:`Stores` registry, one per name, so
instances with the same URL made on different event loops or threads of one process
meet in the same place. Nothing survives the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["Stores", "store_name"]

S = TypeVar("S")


def store_name(url: str) -> str:
    """The store a ``memory://`` URL names: ``""`` for the default one."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "memory" or not sep:
        raise ImproperlyConfigured(f"not a memory:// URL: {url!r}")
    name = rest.partition("?")[0].strip("/")
    # Celery users often write memory://localhost/ for the one default store.
    return "" if name == "localhost" else name


class Stores(Generic[S]):
    """One store per ``memory://`` name, made by ``factory`` on first use (thread-safe)."""

    def __init__(self, factory: Callable[[], S]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._by_name: dict[str, S] = {}

    def get(self, url: str) -> S:
        """The store of ``url``, created if it does not exist yet."""
        name = store_name(url)
        with self._lock:
            store = self._by_name.get(name)
            if store is None:
                store = self._by_name[name] = self._factory()
            return store

    def forget(self, url: str | None = None) -> list[S]:
        """Forget the store of ``url`` (every store when None); return what was forgotten.

        Instances already holding a store keep it; instances made later get a new one.
        """
        with self._lock:
            if url is None:
                forgotten, self._by_name = list(self._by_name.values()), {}
                return forgotten
            store = self._by_name.pop(store_name(url), None)
            return [] if store is None else [store]
