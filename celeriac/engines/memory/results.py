"""In-process result backend (``memory://`` or ``memory://name``), for tests and demos.

Every backend instance with the same URL in one process shares one store, so a
client and a worker running on different event loops (or threads) see the same
results. Documents are kept encoded with the configured serializer, so readers get
their own copies back, exactly as from a real server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac.backends.base import ChordPart, Meta
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import Serializer
from celeriac.states import READY_STATES

__all__ = ["MemoryBackend", "reset_memory_stores"]


@dataclass(slots=True, eq=False)
class _Waiter:
    """One pending ``wait()``: a future owned by ``loop`` (possibly another thread's)."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[bytes]

    def deliver(self, blob: bytes) -> None:
        """Resolve the future from any thread; a closed loop means nobody is waiting."""
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future, blob)
        except RuntimeError:
            pass


def _resolve(future: asyncio.Future[bytes], blob: bytes) -> None:
    """Set the result unless the waiter already timed out or was cancelled."""
    if not future.done():
        future.set_result(blob)


@dataclass(slots=True)
class _Chord:
    """Parts recorded so far for one chord; ``done`` once it was handed out."""

    deadline: float | None
    parts: dict[int, bytes] = field(default_factory=dict)
    done: bool = False
    size: int | None = None
    """Set by ``set_chord_size``; takes precedence over the size a caller passes."""


@dataclass(slots=True)
class _Store:
    """The shared data of one ``memory://name``; every field is guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    results: dict[str, tuple[bytes, str, float | None]] = field(default_factory=dict)
    groups: dict[str, tuple[tuple[str, ...], float | None]] = field(default_factory=dict)
    chords: dict[str, _Chord] = field(default_factory=dict)
    waiters: dict[str, set[_Waiter]] = field(default_factory=dict)

    def live_result(self, task_id: str, now: float) -> tuple[bytes, str] | None:
        """The (blob, status) of a non-expired document; caller holds the lock."""
        entry = self.results.get(task_id)
        if entry is None or not _alive(entry[2], now):
            return None
        return entry[0], entry[1]

    def clear(self) -> None:
        """Drop all data (pending waiters just time out)."""
        with self.lock:
            self.results.clear()
            self.groups.clear()
            self.chords.clear()


_registry: dict[str, _Store] = {}
_registry_lock = threading.Lock()


def _store_name(url: str) -> str:
    """``memory://`` -> ``""``, ``memory://name`` -> ``"name"``."""
    scheme, sep, rest = url.partition("://")
    if scheme != "memory" or not sep:
        raise ImproperlyConfigured(f"not a memory:// result backend URL: {url!r}")
    return rest.strip("/")


def _get_store(url: str) -> _Store:
    """The store shared by every instance with this URL, created on first use."""
    name = _store_name(url)
    with _registry_lock:
        store = _registry.get(name)
        if store is None:
            store = _registry[name] = _Store()
        return store


def reset_memory_stores(url: str | None = None) -> None:
    """Empty and forget the store of ``url`` (all stores when None); for tests."""
    with _registry_lock:
        names = list(_registry) if url is None else [_store_name(url)]
        stores = [_registry.pop(name) for name in names if name in _registry]
    for store in stores:
        store.clear()


def _alive(deadline: float | None, now: float) -> bool:
    """Whether an entry with this deadline is still visible at ``now``."""
    return deadline is None or deadline > now


class MemoryBackend:
    """Result backend keeping documents in this process, shared per URL.

    ``expires`` is Celery's ``result_expires`` in seconds; None or 0 keeps documents
    until forgotten. Expired documents are invisible at once and removed by
    ``cleanup()``. ``options`` is accepted for symmetry and ignored.
    """

    supports_chords = True
    replies = None  # results are stored by task id
    reply_queue = None

    def __init__(
        self,
        url: str,
        *,
        serializer: Serializer,
        expires: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if expires is not None and expires < 0:
            raise ImproperlyConfigured(f"result_expires must not be negative: {expires!r}")
        self.url = url
        self._serializer = serializer
        self._expires = expires or None
        self._store = _get_store(url)
        self._pending: set[_Waiter] = set()

    def _deadline(self) -> float | None:
        """Monotonic time at which something written now expires."""
        return None if self._expires is None else time.monotonic() + self._expires

    def _decode(self, blob: bytes) -> Meta:
        """Decode a stored document into a fresh dict."""
        meta: Meta = self._serializer.loads(blob)
        return meta

    async def connect(self) -> None:
        """Nothing to open; the store exists from construction."""

    async def close(self) -> None:
        """Abandon this instance's pending waits (they raise ConnectionError)."""
        with self._store.lock:
            for waiters in self._store.waiters.values():
                waiters.difference_update(self._pending)
        for waiter in self._pending:
            if not waiter.future.done():
                waiter.future.set_exception(ConnectionError("result backend closed"))
        self._pending.clear()

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Write documents in order (later ones win) and wake waiters of ready ones."""
        encoded = [
            (task_id, self._serializer.dumps(meta), str(meta.get("status")))
            for task_id, meta in items
        ]
        deadline = self._deadline()
        woken: list[tuple[_Waiter, bytes]] = []
        with self._store.lock:
            for task_id, blob, status in encoded:
                self._store.results[task_id] = (blob, status, deadline)
                if status in READY_STATES:
                    waiters = self._store.waiters.pop(task_id, ())
                    woken.extend((waiter, blob) for waiter in waiters)
        for waiter, blob in woken:
            waiter.deliver(blob)

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Documents aligned with ``task_ids``; None for unknown or expired ones."""
        now = time.monotonic()
        with self._store.lock:
            found = [self._store.live_result(task_id, now) for task_id in task_ids]
        return [None if entry is None else self._decode(entry[0]) for entry in found]

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return once a ready document is stored, or the latest document at timeout."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        with self._store.lock:
            entry = self._store.live_result(task_id, time.monotonic())
            if (entry is not None and entry[1] in READY_STATES) or (
                timeout is not None and timeout <= 0
            ):
                return None if entry is None else self._decode(entry[0])
            # Registered under the lock that writers hold, so no store can slip between.
            self._store.waiters.setdefault(task_id, set()).add(waiter)
        self._pending.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                return self._decode(await waiter.future)
        except TimeoutError:
            return (await self.get([task_id]))[0]
        finally:
            self._pending.discard(waiter)
            self._unregister(task_id, waiter)

    def _unregister(self, task_id: str, waiter: _Waiter) -> None:
        """Remove a finished waiter from the shared table."""
        with self._store.lock:
            waiters = self._store.waiters.get(task_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._store.waiters[task_id]

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        with self._store.lock:
            for task_id in task_ids:
                self._store.results.pop(task_id, None)

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember a group's member ids, with the result expiry."""
        with self._store.lock:
            self._store.groups[group_id] = (tuple(task_ids), self._deadline())

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved, unexpired group, or None."""
        with self._store.lock:
            entry = self._store.groups.get(group_id)
        if entry is None or not _alive(entry[1], time.monotonic()):
            return None
        return list(entry[0])

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        with self._store.lock:
            self._store.groups.pop(group_id, None)

    def _live_chord(self, group_id: str) -> _Chord:
        """The chord state of ``group_id``, new if missing or expired; caller holds the lock."""
        chord = self._store.chords.get(group_id)
        if chord is None or not _alive(chord.deadline, time.monotonic()):
            chord = self._store.chords[group_id] = _Chord(self._deadline())
        return chord

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Record the number of header parts chord ``group_id`` waits for."""
        with self._store.lock:
            chord = self._live_chord(group_id)
            chord.size, chord.done, chord.deadline = size, False, self._deadline()

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        """Record a header part; the caller that completes the chord gets all parts."""
        blob = self._serializer.dumps(list(part))
        with self._store.lock:
            chord = self._live_chord(group_id)
            if chord.done:
                return None
            chord.deadline = self._deadline()
            chord.parts.setdefault(index, blob)
            expected = chord.size if chord.size is not None else size
            if expected is None or len(chord.parts) < expected:
                return None
            chord.done = True
            blobs = [chord.parts[key] for key in sorted(chord.parts)]
            chord.parts.clear()
        return [self._decode_part(blob) for blob in blobs]

    def _decode_part(self, blob: bytes) -> ChordPart:
        """Decode one stored chord part into a (task id, state, result) tuple."""
        task_id, state, result = self._serializer.loads(blob)
        return (task_id, state, result)

    async def cleanup(self) -> int:
        """Delete expired documents, groups and chord states; return how many."""
        now = time.monotonic()
        with self._store.lock:
            tables: list[dict[str, Any]] = [self._store.results, self._store.groups]
            expired = [
                (table, key)
                for table in tables
                for key, entry in table.items()
                if not _alive(entry[-1], now)
            ]
            expired += [
                (self._store.chords, key)
                for key, chord in self._store.chords.items()
                if not _alive(chord.deadline, now)
            ]
            for table, key in expired:
                del table[key]
        return len(expired)
