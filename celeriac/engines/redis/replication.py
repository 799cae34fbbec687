"""``WAIT``-based acknowledgement: a write counts once ``min_replicas`` replicas have it.

Redis replicates asynchronously: a primary answers a write before any replica has it, so
a primary lost right after a publish or an ack takes that write with it when Sentinel
promotes a replica (the publish is lost, the acked task runs again). The transport options
``min_replicas`` (default 0: off) and ``min_replicas_timeout`` (seconds, default 1) close
that window for publishes and acks: after the write, the broker asks the primary to
``WAIT`` until that many replicas acknowledged it, and raises :class:`NotReplicated` when
fewer did within the timeout (the write itself is stored on the primary, not undone): a
publisher is told (its publish retry policy publishes again: a duplicate, never a silent
loss); a worker's failed ack leaves the task to be redelivered.

``WAIT`` counts the replicas that have the *calling connection's* last write, so the wait
runs on one connection after a write of its own (a fence key, ``SET`` with a short expiry):
the primary's replication offset at the fence is past every write done before it, on any
connection. One extra round trip per publish or ack batch. The fence goes out on a pooled
connection right after the write (in practice the one the write just gave back); should a
failover happen in that instant and the fence open a new connection to the new master, that
master's replicas would answer for it: the window shrinks to that instant, it is not zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celeriac.exceptions import ImproperlyConfigured, OperationalError
from celeriac.reconnect import _number

__all__ = ["NotReplicated", "Replicas", "replicas_from"]

FENCE_TTL_MS = 60_000


class NotReplicated(OperationalError):
    """Fewer replicas than ``min_replicas`` acknowledged a write within the timeout."""

    maybe_sent = True


@dataclass(frozen=True, slots=True)
class Replicas:
    """How many replicas must acknowledge a write, and for how long to wait."""

    need: int
    timeout: float

    async def confirm(self, client: Any, fence: str, what: str) -> None:
        """Wait until :attr:`need` replicas have every write done so far; raise
        :class:`NotReplicated` naming ``what`` when fewer had it in time."""
        pipe = client.pipeline(transaction=False)  # one connection: WAIT sees its fence
        pipe.execute_command("SET", fence, "1", "PX", FENCE_TTL_MS)
        pipe.execute_command("WAIT", self.need, max(1, math.ceil(self.timeout * 1000)))
        got = int((await pipe.execute())[-1])
        if got < self.need:
            raise NotReplicated(
                f"{what}: {got} of min_replicas={self.need} replicas acknowledged it within "
                f"min_replicas_timeout={self.timeout:g} s (it is stored on the primary only; "
                "a failover now would lose it)"
            )


def replicas_from(options: Mapping[str, Any]) -> Replicas | None:
    """The ``min_replicas`` / ``min_replicas_timeout`` options, or None when off."""
    need = _number(options.get("min_replicas", 0), "min_replicas")
    timeout = _number(options.get("min_replicas_timeout", 1.0), "min_replicas_timeout")
    if need != int(need) or need < 0:
        raise ImproperlyConfigured(f"min_replicas must be a whole number >= 0, not {need!r}")
    if timeout <= 0:
        raise ImproperlyConfigured(f"min_replicas_timeout must be > 0 seconds, not {timeout!r}")
    return Replicas(int(need), timeout) if need else None
