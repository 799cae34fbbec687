"""The Redis transport's keys, and its Lua scripts: each one a step that must not be split.

Every key starts with the ``global_keyprefix`` option, as in kombu. kombu's keys (shared
with Celery peers): the queue lists and priority buckets, ``unacked``, ``unacked_index``,
``_kombu.binding.<exchange>`` and ``_kombu.binding_permanent.<exchange>``. celeriac's own
keys all start with ``celeriac:`` (:class:`RedisKeys` names each one; the transport's
docstring, :mod:`celeriac.engines.redis.broker`, says what each holds).

Every script runs atomically inside Redis, so a message is always in exactly one place:
a queue list, the delayed sorted set of its queue, or the ``unacked`` hash with a lease
record. Wake-up token lists are capped at :data:`NOTIFY_CAP` and get a :data:`NOTIFY_TTL`
expiry wherever a token is pushed: a token nobody took within a poll interval is useless,
and queues nobody consumes must not leave keys behind.
"""

from __future__ import annotations

from typing import Any

from celeriac.protocol import kombu

__all__ = [
    "ACK",
    "DEAD_LETTER",
    "DEFER",
    "FETCH",
    "HEARTBEAT",
    "MOVE_DUE",
    "NOTIFY_CAP",
    "NOTIFY_TTL",
    "REQUEUE_DEAD",
    "RESTORE",
    "SCHEDULE",
    "SCRIPTS",
    "RedisKeys",
]

NOTIFY_CAP = 16
"""Longest a wake-up token list grows; tokens beyond it would only cause idle wake-ups."""
NOTIFY_TTL = 60
"""Seconds a wake-up token list lives after its last push (the scripts say 60 too)."""


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

    def requeued(self, consumer_id: str) -> str:
        """Set of a consumer's delivery tags that a sweep requeued (it was thought dead)."""
        return f"{self.prefix}celeriac:requeued:{consumer_id}"

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


ACK = """
-- Forget finished deliveries: unacked entry, unacked_index score and lease record.
-- KEYS: unacked, unacked_index, then the lease hashes involved.
-- ARGV: (index of the tag's lease hash among those, tag) pairs.
for i = 1, #ARGV, 2 do
  local tag = ARGV[i + 1]
  redis.call('HDEL', KEYS[1], tag)
  redis.call('ZREM', KEYS[2], tag)
  redis.call('HDEL', KEYS[2 + tonumber(ARGV[i])], tag)
end
return #ARGV / 2
"""

FETCH = """
-- Pop up to ARGV[2] messages, highest priority bucket first, round-robin over the
-- queues inside a bucket, and lease each one in the same step.
-- KEYS: unacked, unacked_index, lease hash, delayed index, bucket keys (bucket-major,
--       nq per bucket), then the nq notify keys.
-- ARGV: now, limit, tag prefix, nq, notify cap, nq queue names, nq JSON queue names.
local now, limit, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local nq, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local nlevels = (#KEYS - 4 - nq) / nq
local out, hargs, zargs, largs = {}, {}, {}, {}
local n = 0
for level = 0, nlevels - 1 do
  local base = 4 + level * nq
  local active = true
  while active and n < limit do
    active = false
    for qi = 1, nq do
      if n >= limit then break end
      local raw = redis.call('RPOP', KEYS[base + qi])
      if raw then
        active = true
        n = n + 1
        local tag = prefix .. n
        hargs[#hargs + 1] = tag
        hargs[#hargs + 1] = '[' .. raw .. ',"",' .. ARGV[5 + nq + qi] .. ']'
        zargs[#zargs + 1] = now
        zargs[#zargs + 1] = tag
        largs[#largs + 1] = tag
        largs[#largs + 1] = ARGV[5 + qi]
        out[#out + 1] = qi
        out[#out + 1] = tag
        out[#out + 1] = raw
      end
    end
  end
  if n >= limit then break end
end
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(hargs))
  redis.call('ZADD', KEYS[2], unpack(zargs))
  redis.call('HSET', KEYS[3], unpack(largs))
end
if n >= limit then
  -- Pass the baton: wake another waiting consumer for what is left.
  for qi = 1, nq do
    for level = 0, nlevels - 1 do
      if redis.call('LLEN', KEYS[4 + level * nq + qi]) > 0 then
        local notify = KEYS[4 + nlevels * nq + qi]
        redis.call('LPUSH', notify, '1')
        redis.call('LTRIM', notify, 0, cap - 1)
        redis.call('EXPIRE', notify, 60)
        break
      end
    end
  end
else
  -- Every bucket is empty now: the tokens left would only wake consumers for nothing.
  for qi = 1, nq do
    redis.call('DEL', KEYS[4 + nlevels * nq + qi])
  end
end
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
table.insert(out, 1, first[2] or '')
return out
"""

SCHEDULE = """
-- Store not-yet-due messages of one queue and keep the index at its earliest due time.
-- KEYS: the queue's delayed zset, delayed index.  ARGV: queue, then (due, member) pairs.
-- Scores stay strings: Lua would round numbers to 14 digits when passing them back.
local earliest, earliest_text = nil, nil
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  local due = tonumber(ARGV[i])
  if earliest == nil or due < earliest then earliest, earliest_text = due, ARGV[i] end
end
local current = redis.call('ZSCORE', KEYS[2], ARGV[1])
if earliest ~= nil and (not current or tonumber(current) > earliest) then
  redis.call('ZADD', KEYS[2], earliest_text, ARGV[1])
end
return 1
"""

MOVE_DUE = """
-- Move due delayed messages to their queue lists (each exactly once).
-- KEYS: delayed index.  ARGV: now, max to move, key prefix, separator, notify cap.
-- A delayed member is one priority-step digit followed by the stored envelope.
local now, max, prefix, sep = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local cap = tonumber(ARGV[5])
local moved = 0
local queues = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 64)
for _, q in ipairs(queues) do
  if moved >= max then break end
  local zkey = prefix .. 'celeriac:delayed:' .. q
  local due = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', 0, max - moved)
  for _, member in ipairs(due) do
    local step = string.sub(member, 1, 1)
    local list = prefix .. q
    if step ~= '0' then list = list .. sep .. step end
    redis.call('LPUSH', list, string.sub(member, 2))
    redis.call('ZREM', zkey, member)
    moved = moved + 1
  end
  if #due > 0 then
    local notify = prefix .. 'celeriac:notify:' .. q
    redis.call('LPUSH', notify, '1')
    redis.call('LTRIM', notify, 0, cap - 1)
    redis.call('EXPIRE', notify, 60)
  end
  local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('ZADD', KEYS[1], first[2], q)
  else
    redis.call('ZREM', KEYS[1], q)
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {moved, nxt[2] or ''}
"""

HEARTBEAT = """
-- Keep a consumer alive and its leased tags fresh for kombu's visibility sweep.
-- KEYS: liveness key, consumers set, lease hash, unacked_index, requeued set.
-- ARGV: consumer id, lease ms, now.  Returns {1, requeued tags...} when the consumer was
-- (re)registered (the tags another consumer's sweep requeued meanwhile), else {0}.
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
local added = redis.call('SADD', KEYS[2], ARGV[1])
local tags = redis.call('HKEYS', KEYS[3])
local args = {}
for i, tag in ipairs(tags) do
  args[#args + 1] = ARGV[3]
  args[#args + 1] = tag
  if #args >= 1000 or i == #tags then
    redis.call('ZADD', KEYS[4], 'XX', unpack(args))
    args = {}
  end
end
if added == 0 then return {0} end
local requeued = redis.call('SMEMBERS', KEYS[5])
redis.call('DEL', KEYS[5])
table.insert(requeued, 1, 1)
return requeued
"""

RESTORE = """
-- Put leased messages back at the consuming end of their lists (kombu's restore).
-- KEYS: unacked, unacked_index, lease hash, liveness key, consumers set, the owner's
--       requeued set, then a (list key, notify key) pair per message.
-- ARGV: only-if-dead flag, consumer id, notify cap, then (tag, stored entry, payload)
--       per message.  An entry changed or gone since it was read is left alone.  A sweep
--       (only-if-dead) notes the tags it requeued in the requeued set, for a day, so that
--       the owner, should it come back, knows which of its deliveries it must not run.
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local cap = tonumber(ARGV[3])
local restored = 0
for i = 0, (#ARGV - 3) / 3 - 1 do
  local tag, expected = ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  local current = redis.call('HGET', KEYS[1], tag)
  if current and current == expected then
    redis.call('RPUSH', KEYS[7 + 2 * i], ARGV[6 + 3 * i])
    redis.call('HDEL', KEYS[1], tag)
    redis.call('ZREM', KEYS[2], tag)
    redis.call('LPUSH', KEYS[8 + 2 * i], '1')
    redis.call('LTRIM', KEYS[8 + 2 * i], 0, cap - 1)
    redis.call('EXPIRE', KEYS[8 + 2 * i], 60)
    if ARGV[1] == '1' then redis.call('SADD', KEYS[6], tag) end
    restored = restored + 1
  end
  redis.call('HDEL', KEYS[3], tag)
end
if ARGV[1] == '1' and restored > 0 then redis.call('EXPIRE', KEYS[6], 86400) end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[2])
end
return restored
"""

DEAD_LETTER = """
-- Set a leased message aside with its reason, and ack it, in one step.
-- KEYS: unacked, unacked_index, lease hash, dead zset, dead hash.
-- ARGV: tag, dead id, time, metadata JSON, entry suffix, fallback payload.
local raw = ARGV[6]
local entry = redis.call('HGET', KEYS[1], ARGV[1])
local suffix = ARGV[5]
if entry and string.sub(entry, 1, 1) == '[' and string.sub(entry, -#suffix) == suffix then
  raw = string.sub(entry, 2, #entry - #suffix)
end
redis.call('HSET', KEYS[5], ARGV[2], ARGV[4] .. '\\n' .. raw)
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

DEFER = """
-- Move a leased message to its queue's delayed set until a due time, and ack it, in one
-- step; nothing happens when the lease was lost (the message is then someone else's).
-- KEYS: unacked, unacked_index, lease hash, the queue's delayed zset, delayed index.
-- ARGV: tag, due time (a string, as SCHEDULE keeps it), queue, entry suffix, step digit.
local entry = redis.call('HGET', KEYS[1], ARGV[1])
local suffix = ARGV[4]
if not entry or string.sub(entry, 1, 1) ~= '[' or string.sub(entry, -#suffix) ~= suffix then
  return 0
end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[5] .. string.sub(entry, 2, #entry - #suffix))
local current = redis.call('ZSCORE', KEYS[5], ARGV[3])
if not current or tonumber(current) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[3])
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

REQUEUE_DEAD = """
-- Put dead letters back on their queues; each id at most once.
-- KEYS: dead zset, dead hash, then a (list key, notify key) pair per id.
-- ARGV: notify cap, then (id, payload) per id.
local cap = tonumber(ARGV[1])
local moved = 0
for i = 0, (#ARGV - 1) / 2 - 1 do
  local id = ARGV[2 + 2 * i]
  if redis.call('HDEL', KEYS[2], id) == 1 then
    redis.call('LPUSH', KEYS[3 + 2 * i], ARGV[3 + 2 * i])
    redis.call('LPUSH', KEYS[4 + 2 * i], '1')
    redis.call('LTRIM', KEYS[4 + 2 * i], 0, cap - 1)
    redis.call('EXPIRE', KEYS[4 + 2 * i], 60)
    moved = moved + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return moved
"""

SCRIPTS = {
    "ACK": ACK,
    "FETCH": FETCH,
    "SCHEDULE": SCHEDULE,
    "MOVE_DUE": MOVE_DUE,
    "HEARTBEAT": HEARTBEAT,
    "RESTORE": RESTORE,
    "DEAD_LETTER": DEAD_LETTER,
    "DEFER": DEFER,
    "REQUEUE_DEAD": REQUEUE_DEAD,
}
"""Every script of the transport, by the name its callers use."""
