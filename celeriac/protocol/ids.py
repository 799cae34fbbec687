"""Message ids: task ids, group ids and kombu delivery tags are random UUID strings.

Celery writes ``str(uuid.uuid4())`` for all of them. Publishing makes two per message
(the task id and the delivery tag of each stored copy), and ``uuid.uuid4()`` builds a
``UUID`` object, checks it and formats it through an integer: about 5 µs. :func:`uuid4`
formats the same random bytes directly, and draws them from the OS for many ids at a
time (one ``os.urandom`` call costs about as much as formatting ten ids), keeping the
spare ids in a pool that a forked child empties (it must not reuse its parent's ids).
"""

from __future__ import annotations

import os

__all__ = ["uuid4", "uuid4_many"]

# The variant nibble keeps its two low random bits under the RFC 4122 prefix ``10``.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_POOL_SIZE = 64
_pool: list[str] = []


def uuid4_many(n: int) -> list[str]:
    """``n`` random (version 4, RFC 4122 variant) UUID strings from one ``os.urandom``."""
    h = os.urandom(16 * n).hex()
    variant = _VARIANT
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{variant[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def uuid4() -> str:
    """A random (version 4, RFC 4122 variant) UUID string, as ``str(uuid.uuid4())``."""
    try:
        return _pool.pop()  # (atomic: threads never get the same id)
    except IndexError:
        _pool.extend(uuid4_many(_POOL_SIZE))
        return _pool.pop()


def _forget_after_fork() -> None:
    _pool.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
