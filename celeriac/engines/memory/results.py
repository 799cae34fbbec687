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
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac.backends.base import ChordPart, Meta
from celeriac.backends.waiting import Waiters
from celeriac.engines.memory.connection import Stores
from celeriac.protocol.serializers import Serializer
from celeriac.states import READY_STATES

__all__ = ["MemoryBackend", "reset_memory_stores"]


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
    backends: weakref.WeakSet[MemoryBackend] = field(default_factory=weakref.WeakSet)
    """Every instance on this store, told of each ready document (it may be waiting)."""

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


_STORES: Stores[_Store] = Stores(_Store)


def reset_memory_stores(url: str | None = None) -> None:
    """Empty and forget the store of ``url`` (all stores when None); for tests."""
    for store in _STORES.forget(url):
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
        self.url = url
        self._serializer = serializer
        self._expires = expires or None
        self._store = _STORES.get(url)
        # Waits per event loop: a writer on any thread resolves them on their own loop.
        self._waiting: dict[asyncio.AbstractEventLoop, Waiters[bytes]] = {}
        with self._store.lock:
            self._store.backends.add(self)

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
        waiting, self._waiting = self._waiting, {}
        here = asyncio.get_running_loop()
        for loop, waiters in waiting.items():
            closed = ConnectionError("result backend closed")
            if loop is here:
                waiters.fail_all(closed)
                continue
            try:
                loop.call_soon_threadsafe(waiters.fail_all, closed)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Write documents in order (later ones win) and wake waiters of ready ones."""
        encoded = [
            (task_id, self._serializer.dumps(meta), str(meta.get("status")))
            for task_id, meta in items
        ]
        deadline = self._deadline()
        with self._store.lock:
            for task_id, blob, status in encoded:
                self._store.results[task_id] = (blob, status, deadline)
            backends = list(self._store.backends)
        ready = [(task_id, blob) for task_id, blob, status in encoded if status in READY_STATES]
        if ready:
            for backend in backends:
                backend._deliver(ready)

    def _deliver(self, ready: list[tuple[str, bytes]]) -> None:
        """Resolve, each on its own loop, the waits for these ready documents (any thread).

        A wait registers before it looks at the store under the lock, and a writer looks
        for waits after storing under it: no document can slip between the two.
        """
        for loop, waiters in list(self._waiting.items()):
            found = [(task_id, blob) for task_id, blob in ready if task_id in waiters]
            if not found:
                continue
            try:
                loop.call_soon_threadsafe(_resolve, waiters, found)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Documents aligned with ``task_ids``; None for unknown or expired ones."""
        now = time.monotonic()
        with self._store.lock:
            found = [self._store.live_result(task_id, now) for task_id in task_ids]
        return [None if entry is None else self._decode(entry[0]) for entry in found]

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return once a ready document is stored, or the latest document at timeout."""
        with self._store.lock:
            entry = self._store.live_result(task_id, time.monotonic())
        if (entry is not None and entry[1] in READY_STATES) or (
            timeout is not None and timeout <= 0
        ):
            return None if entry is None else self._decode(entry[0])
        loop = asyncio.get_running_loop()
        waiters = self._waiting.setdefault(loop, Waiters())
        try:
            blob = await waiters.wait(
                task_id, timeout, registered=lambda: self._check(waiters, task_id)
            )
        finally:
            if not waiters and self._waiting.get(loop) is waiters:
                del self._waiting[loop]
        if blob is None:
            return (await self.get([task_id]))[0]
        return self._decode(blob)

    def _check(self, waiters: Waiters[bytes], task_id: str) -> None:
        """Resolve a wait at once if its document became ready before it registered."""
        with self._store.lock:
            entry = self._store.live_result(task_id, time.monotonic())
        if entry is not None and entry[1] in READY_STATES:
            waiters.resolve(task_id, entry[0])

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

    async def add_to_chord(self, group_id: str, count: int) -> int:
        """Grow the chord's size by ``count``; the new size."""
        with self._store.lock:
            chord = self._live_chord(group_id)
            chord.size = (chord.size or 0) + count
            return chord.size

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


def _resolve(waiters: Waiters[bytes], ready: list[tuple[str, bytes]]) -> None:
    """Resolve the waits for ``ready`` documents (on the waiters' own loop)."""
    for task_id, blob in ready:
        waiters.resolve(task_id, blob)
