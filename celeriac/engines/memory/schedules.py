"""The in-memory schedule store: state shared by the beats of one process (tests, demos).

``memory://`` and ``memory://name`` name a state (see :mod:`.connection`), as for the
memory transport, so several schedulers in one process meet in the same place.
Nothing survives the process. The clock is injectable so lease expiry can be tested
without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celeriac.engines.memory.connection import Stores

__all__ = ["MemoryState", "MemoryStore", "reset_memory_stores"]


@dataclass
class _Namespace:
    holder: str | None = None
    expires_at: float = 0.0
    last_runs: dict[str, tuple[float, str]] = field(default_factory=dict)  # (run, claimer)


class MemoryState:
    """The shared state behind :class:`MemoryStore` instances: leases and last runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.namespaces: dict[str, _Namespace] = {}

    def get(self, namespace: str) -> _Namespace:
        """The state of ``namespace`` (created empty); call with ``lock`` held."""
        found = self.namespaces.get(namespace)
        if found is None:
            found = self.namespaces[namespace] = _Namespace()
        return found


_STATES: Stores[MemoryState] = Stores(MemoryState)


def reset_memory_stores() -> None:
    """Forget every ``memory://`` state (between tests)."""
    _STATES.forget()


class MemoryStore:
    """A :class:`~celeriac.beat.stores.ScheduleStore` in process memory."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        namespace: str = "default",
        options: Mapping[str, Any] | None = None,
        state: MemoryState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._state = state if state is not None else _STATES.get(url)
        self._clock = clock

    def __repr__(self) -> str:
        return f"<MemoryStore {self.url} namespace={self.namespace}>"

    async def connect(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take a free or expired lease, or extend ``holder``'s own one."""
        now = self._clock()
        with self._state.lock:
            ns = self._state.get(self.namespace)
            if ns.holder not in (None, holder) and ns.expires_at > now:
                return False
            ns.holder, ns.expires_at = holder, now + ttl
            return True

    async def release_lease(self, holder: str) -> None:
        """Drop the lease if ``holder`` has it."""
        with self._state.lock:
            ns = self._state.get(self.namespace)
            if ns.holder == holder:
                ns.holder, ns.expires_at = None, 0.0

    async def lease_holder(self) -> str | None:
        """The holder of the unexpired lease, or None."""
        with self._state.lock:
            ns = self._state.get(self.namespace)
            return ns.holder if ns.expires_at > self._clock() else None

    async def load(self) -> dict[str, float]:
        """Every entry's last run."""
        with self._state.lock:
            runs = self._state.get(self.namespace).last_runs
            return {name: run for name, (run, _) in runs.items()}

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        """Compare-and-set ``entry``'s last run, only while ``holder`` holds the lease."""
        now = self._clock()
        with self._state.lock:
            ns = self._state.get(self.namespace)
            if ns.holder != holder or ns.expires_at <= now:
                return False
            current = ns.last_runs.get(entry)
            if (None if current is None else current[0]) != expected:
                return False
            ns.last_runs[entry] = (new, holder)
            return True

    async def revert(self, holder: str, entry: str, claimed: float, previous: float | None) -> bool:
        """Put ``previous`` back if the last run is still ``claimed`` by ``holder``."""
        with self._state.lock:
            runs = self._state.get(self.namespace).last_runs
            if runs.get(entry) != (claimed, holder):
                return False
            if previous is None:
                del runs[entry]
            else:
                runs[entry] = (previous, "")
            return True
