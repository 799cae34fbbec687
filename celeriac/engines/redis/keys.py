"""Key names of the Redis transport, all behind the ``global_keyprefix`` (as kombu does).

kombu's keys (shared with Celery peers): the queue lists and priority buckets, ``unacked``,
``unacked_index``, ``_kombu.binding.<exchange>`` and ``_kombu.binding_permanent.<exchange>``.
celeriac's own keys all start with ``celeriac:``.
"""

from __future__ import annotations

from typing import Any

from celeriac.protocol import kombu

__all__ = ["RedisKeys"]


class RedisKeys:
    """Builds every key the transport touches, with the global key prefix applied."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.unacked = prefix + "unacked"
        self.unacked_index = prefix + "unacked_index"
        self.consumers = prefix + "celeriac:consumers"
        self.sweep_lock = prefix + "celeriac:sweep"
        self.delayed_index = prefix + "celeriac:delayed"
        self.dead = prefix + "celeriac:dead"
        self.dead_messages = prefix + "celeriac:dead:messages"
        self.revoked = prefix + "celeriac:revoked"
        self.exchanges = prefix + "celeriac:exchanges"

    def bucket(self, queue: str, priority: Any = 0) -> str:
        """The list holding ``queue``'s messages of ``priority``."""
        if priority is None or (type(priority) is int and priority < kombu.PRIORITY_STEPS[1]):
            return self.prefix + queue  # bucket 0, the plain list: most messages
        return self.prefix + kombu.bucket_key(queue, priority)

    def buckets(self, queue: str) -> list[str]:
        """All four priority lists of ``queue``."""
        return [self.bucket(queue, step) for step in kombu.PRIORITY_STEPS]

    def lease(self, consumer_id: str) -> str:
        """Hash tag -> queue of the messages leased to a consumer."""
        return f"{self.prefix}celeriac:lease:{consumer_id}"

    def live(self, consumer_id: str) -> str:
        """A consumer's liveness key (expires ``lease_timeout`` after its last heartbeat)."""
        return f"{self.prefix}celeriac:consumer:{consumer_id}"

    def notify(self, queue: str) -> str:
        """Wake-up tokens for consumers waiting on ``queue``."""
        return f"{self.prefix}celeriac:notify:{queue}"

    def delayed(self, queue: str) -> str:
        """Not-yet-due messages of ``queue`` (zset scored by due time)."""
        return f"{self.prefix}celeriac:delayed:{queue}"

    def fanout(self, exchange: str) -> str:
        """celeriac queues that get a list copy of each message to a fanout exchange."""
        return f"{self.prefix}celeriac:fanout:{exchange}"

    def binding(self, exchange: str) -> str:
        """kombu's binding set of ``exchange``."""
        return f"{self.prefix}_kombu.binding.{exchange}"

    def binding_permanent(self, exchange: str) -> str:
        """kombu 5.7's set of bindings that never expire."""
        return f"{self.prefix}_kombu.binding_permanent.{exchange}"
