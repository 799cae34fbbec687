"""Message ids: task ids, group ids and kombu delivery tags are random UUID strings.

Celery writes ``str(uuid.uuid4())`` for all of them. Publishing makes two per message
(the task id and the delivery tag of each stored copy), and ``uuid.uuid4()`` builds a
``UUID`` object, checks it and formats it through an integer: about 5 µs. :func:`uuid4`
formats the same 16 random bytes directly, in about a fifth of that.
"""

from __future__ import annotations

import os

__all__ = ["uuid4"]

# The variant nibble keeps its two low random bits under the RFC 4122 prefix ``10``.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def uuid4() -> str:
    """A random (version 4, RFC 4122 variant) UUID string, as ``str(uuid.uuid4())``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
