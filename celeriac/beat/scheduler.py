"""Beat: send each periodic task once per due tick, however many beats are running.

Design
------
Any number of beat processes (``celeriac beat``, ``celeriac worker -B``) may run
against the same :class:`~celeriac.beat.stores.ScheduleStore` (by default the broker's
SQLite file or Redis database). Two mechanisms keep every tick sent exactly once:

1. **A leader lease.** Every beat tries to take or extend the lease in the store every
   ``beat_lease_renew_interval`` seconds (default: a quarter of the lease). The lease
   lasts ``beat_lease_seconds`` (4 s); taking or extending it is one atomic step in the
   store. Only the holder sends. When the holder dies its lease expires and another
   beat takes over within ``lease + renew interval``; on a warm exit (SIGTERM/SIGINT)
   the holder deletes its lease and another takes over at its next attempt.

2. **A per-tick claim.** Before publishing, the leader moves the entry's stored last run
   from the value it read to the tick it is about to send (compare-and-set), in the
   same atomic step as a check that it still holds the lease. If the claim fails, the
   tick is not sent. So two beats that both believe they lead (a leader change exactly
   at a tick) cannot both send it: only one compare-and-set from the same old value
   succeeds.

A leader paused past its lease (GC, SIGSTOP, a swapped-out VM) and then resumed must
not send. Its lease is measured on the monotonic clock from the moment it asked for
it, minus one renew interval of margin; after the pause that local view has expired,
so it sends nothing until it has renewed. A pause falling between that local check and
the claim is caught by the store: the claim checks the lease atomically and fails once
another beat holds it (and the compare-and-set fails once that beat sent the tick). A
pause falling between a successful claim and the publish is noticed by re-checking the
local lease after the claim: the claim is reverted (if nobody moved past it since) and
the new leader sends the tick; if the new leader already sent a later tick, the paused
one is dropped, as any missed run is (below). A revert names the beat that claimed, so
it never undoes another beat's claim of the same tick.

Ticks
-----
The store keeps each entry's last run. The next run is ``schedule.next_run(last_run,
now)``; when it is not in the future the entry is due. The tick sent is the *latest*
run of the schedule not after ``now`` (for an interval: the last multiple of the
interval after the previous run), and it becomes the new last run. So intervals do not
drift with loop latency, and after downtime a schedule that missed several runs runs
once, not once per missed tick. An entry never seen before is recorded with ``now`` as
its last run, so it first fires at ``schedule.first_run(now)`` (Celery's behaviour: an
interval entry fires one interval after it is first seen). A schedule whose first run is
not in the future (a ``clocked`` time already past) is due at once.

Entries come from an :class:`~celeriac.beat.sources.EntrySource`: by default the app's
``beat_schedule``; with django-celery-beat's scheduler name, its tables. Beat asks the
source at each pass whether the entries changed, and tells it each tick it sent.

Each message's task id is derived from the namespace, entry and tick
(:func:`tick_task_id`): should a tick ever be published twice (a publish that failed
from our side but reached the broker is reverted and retried), both copies carry the
same id.

Failures. A publish that fails (broker down) reverts the claim, and the tick is retried
on the next pass. A claim whose reply is lost (the store connection dropped) may or may
not have been applied: it is reverted once the store answers again. A message that
cannot be built (unknown option, unserializable argument) is logged and the tick counts
as run, as in Celery. So a tick is sent once; the two exceptions are narrow: a beat
killed between its claim and its publish loses that one tick, and a publish that raised
on our side yet reached the broker is sent again, under the same task id.

Outages. Beat never stops for a store or broker outage, nor for a store down when it
starts (a bad URL or option still stops it at once): it gives up leading (its local
lease is void), tries again every renew interval and resumes when the server answers,
sending each schedule's latest missed tick once. Each outage is logged once when it
begins ("... unreachable, retrying"), once at error level if it outlasts the broker
connection policy's deadline (:mod:`celeriac.reconnect`: the lease, 30 s, by default),
and once when it ends ("... back after N s").

The loop sleeps until the next run, the next lease renewal or ``beat_max_loop_interval``
(5 s), whichever is first: no busy loop. :func:`plan_ticks` (what is due now) is pure,
and :class:`Beat` takes an injectable :class:`Clock`, so both are tested without sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from celeriac import clock as wall_clock
from celeriac import signals
from celeriac.beat.entry import Entry
from celeriac.beat.schedules import Schedule
from celeriac.beat.schedules import schedule as interval
from celeriac.beat.sources import EntrySource, FixedSource, source_for_app
from celeriac.beat.stores import ScheduleStore, store_for_app
from celeriac.exceptions import ImproperlyConfigured, MessageError, SerializationError
from celeriac.masking import mask_url
from celeriac.reconnect import LEASE, Outage, broker_retry_options

__all__ = [
    "Beat",
    "BeatOptions",
    "Clock",
    "Due",
    "Plan",
    "Sender",
    "SystemClock",
    "latest_tick",
    "plan_ticks",
    "run_embedded_beat",
    "stop_embedded_beat",
    "tick_task_id",
]

logger = logging.getLogger("celeriac.beat")

#: Sends one entry's message with the given task id.
Sender = Callable[[Entry, str], Awaitable[None]]

_TICK_IDS = uuid.uuid5(uuid.NAMESPACE_DNS, "beat.celeriac")
# Missed crontab/solar runs are walked one by one to find the latest; past this many
# the current time is used instead (the schedule is then re-aligned by next_run).
_MAX_CATCH_UP_STEPS = 10_000
# Errors that publishing again cannot fix: the tick is dropped, not retried.
_PERMANENT_ERRORS = (TypeError, ValueError, SerializationError, MessageError, ImproperlyConfigured)


class Clock(Protocol):
    """Where beat reads the time: wall clock (UTC) for schedules, monotonic for the lease."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...


class SystemClock:
    """The real clocks."""

    def now(self) -> datetime:
        """The current time in UTC (celeriac's wall clock, which a test may fake)."""
        return datetime.fromtimestamp(wall_clock.wall(), UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


# -- what is due now (pure) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """An entry to send now: the stored last run the claim expects and the tick to send."""

    entry: Entry
    previous: float | None  # None: no record yet (a first run not in the future)
    tick: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of :func:`plan_ticks`."""

    due: list[Due]
    new: list[Entry]  # no record yet: record `now` as their last run
    wake_at: datetime | None  # the earliest next run once `due` is sent; None: no entries


def latest_tick(schedule: Schedule, due_at: datetime, now: datetime) -> datetime:
    """The latest run of ``schedule`` not after ``now``, counting from the due run ``due_at``."""
    if isinstance(schedule, interval):
        missed = math.floor((now - due_at) / schedule.run_every)
        return due_at + schedule.run_every * max(missed, 0)
    tick = due_at
    for _ in range(_MAX_CATCH_UP_STEPS):
        following = schedule.next_run(tick, now)
        if following > now:
            return tick
        tick = following
    return now


def _from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def plan_ticks(entries: Sequence[Entry], last_runs: Mapping[str, float], now: datetime) -> Plan:
    """What to send at ``now``, given each entry's stored last run (epoch seconds)."""
    due: list[Due] = []
    new: list[Entry] = []
    upcoming: list[datetime] = []
    for entry in entries:
        previous = last_runs.get(entry.name)
        if previous is None:
            first = entry.schedule.first_run(now)
            if first > now:
                new.append(entry)
                upcoming.append(first)
                continue
            tick = latest_tick(entry.schedule, first, now)
            due.append(Due(entry, None, tick))
            upcoming.append(entry.schedule.next_run(tick, now))
            continue
        next_at = entry.schedule.next_run(_from_epoch(previous), now)
        if next_at > now:
            upcoming.append(next_at)
            continue
        tick = latest_tick(entry.schedule, next_at, now)
        due.append(Due(entry, previous, tick))
        upcoming.append(entry.schedule.next_run(tick, now))
    due.sort(key=lambda d: d.tick)
    return Plan(due, new, min(upcoming) if upcoming else None)


def tick_task_id(namespace: str, entry_name: str, tick: datetime) -> str:
    """The task id of ``entry_name``'s message for ``tick``: the same for every sender."""
    stamp = tick.astimezone(UTC).isoformat()
    return str(uuid.uuid5(_TICK_IDS, f"{namespace}\x00{entry_name}\x00{stamp}"))


# -- the loop --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeatOptions:
    """Timing of the loop and the lease (settings ``beat_max_loop_interval``,
    ``beat_lease_seconds``, ``beat_lease_renew_interval``)."""

    max_interval: float = 5.0
    lease_seconds: float = 4.0
    renew_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.max_interval <= 0 or self.renew_interval <= 0:
            raise ImproperlyConfigured("beat intervals must be positive")
        if self.lease_seconds < 2 * self.renew_interval:
            raise ImproperlyConfigured(
                f"beat_lease_seconds ({self.lease_seconds}) must be at least twice"
                f" beat_lease_renew_interval ({self.renew_interval})"
            )

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any], max_interval: float | None = None) -> BeatOptions:
        """Read the settings; ``max_interval`` (the CLI's ``--max-interval``) wins."""
        lease = float(conf.get("beat_lease_seconds") or 4.0)
        renew = float(conf.get("beat_lease_renew_interval") or lease / 4)
        loop = max_interval or conf.get("beat_max_loop_interval") or 5.0
        return cls(max_interval=float(loop), lease_seconds=lease, renew_interval=renew)


def default_holder_id() -> str:
    """``<host>:<pid>:<random>``: unique per beat, readable in the store."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Beat:
    """One beat instance: keeps (or waits for) the lease and sends due entries.

    The entries are ``entries`` when given, else ``source``'s, else the app's
    (``beat_schedule`` and ``add_periodic_task``, or django-celery-beat's tables when
    ``beat_scheduler`` names them), read at :meth:`start` and re-read when the source
    changed. ``send`` defaults to publishing through the app, the same path as
    ``send_task``.
    """

    def __init__(
        self,
        app: Any,
        store: ScheduleStore,
        entries: Sequence[Entry] | None = None,
        *,
        options: BeatOptions | None = None,
        clock: Clock | None = None,
        send: Sender | None = None,
        holder: str | None = None,
        embedded: bool = False,
        source: EntrySource | None = None,
    ) -> None:
        self.app = app
        self.embedded = embedded
        """Runs inside a worker (``worker -B``): ``beat_embedded_init`` is sent too."""
        self.store = store
        self.entries: list[Entry] = []
        if source is None:
            source = FixedSource(entries) if entries is not None else source_for_app(app)
        self.source: EntrySource = source
        self.options = options or BeatOptions()
        self.clock: Clock = clock or SystemClock()
        self.send: Sender = send or self._publish
        self.holder = holder or default_holder_id()
        self._valid_until = -math.inf  # monotonic; the lease as this process sees it
        self._renew_at = -math.inf  # monotonic; next lease attempt
        self._retry_soon = False
        self._unsure: list[tuple[str, float, float | None]] = []
        self._started = False
        self._connected = False
        deadline = _deadline(getattr(app, "conf", None))
        self.store_outage = Outage(
            logger, f"beat: schedule store {mask_url(store.url)}", deadline=deadline
        )
        """The store's outages, each logged once; beat keeps retrying through them."""
        self.broker_outage = Outage(logger, "beat: broker", deadline=deadline)
        """Publishes that fail (the broker down), logged once per outage."""

    @property
    def is_leader(self) -> bool:
        """True while this beat's lease is valid as far as it knows."""
        return self.clock.monotonic() < self._valid_until

    async def start(self) -> None:
        """Read the app's entries and connect the store; idempotent."""
        if self._started:
            return
        self._started = True
        await self.source.start()
        await self._refresh(first=True)
        try:
            await self._connect()
        except _PERMANENT_ERRORS:
            raise  # a bad URL or option: no use waiting
        except Exception as exc:  # the store is down at start: ride it out as any outage
            self.store_outage.failed(exc)

    async def _connect(self) -> None:
        if not self._connected:
            await self.store.connect()
            self._connected = True

    async def _refresh(self, *, first: bool = False) -> None:
        """Take the source's entries if they changed."""
        changed = await self.source.entries()
        if changed is not None:
            if not first:
                logger.info("beat: the schedule changed; %d entries", len(changed))
            self.entries = changed

    async def shutdown(self) -> None:
        """Give the lease up (another beat takes over at once), close the store and source."""
        try:
            await self._settle_unsure()
            # Deletes the lease only if it is still ours; harmless otherwise.
            await self.store.release_lease(self.holder)
        except Exception as exc:  # the store is gone: the lease simply expires
            logger.warning("beat: could not release the lease: %s", exc)
        finally:
            self._valid_until = -math.inf
            self._connected = False
            try:
                await self.store.close()
            finally:
                await self.source.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, then shut down."""
        await self.start()
        signals.beat_init.send(sender=self)
        if self.embedded:
            signals.beat_embedded_init.send(sender=self)
        try:
            while not stop.is_set():
                try:
                    delay = await self.tick()
                except Exception as exc:
                    # An outage of the store: ridden out, and logged once (not per pass).
                    self.store_outage.failed(exc)
                    logger.debug("beat: store error details", exc_info=True)
                    self._valid_until = -math.inf
                    delay = self.options.renew_interval
                else:
                    self.store_outage.ok()
                await _sleep_unless(stop, delay)
        finally:
            await asyncio.shield(self.shutdown())

    async def tick(self) -> float:
        """One pass: keep the lease, send what is due if leading; return seconds to sleep."""
        self._retry_soon = False
        await self._connect()
        await self._settle_unsure()
        await self._keep_lease()
        if not self.is_leader:
            return self._delay(None)
        await self._refresh()
        last_runs = await self.store.load()
        now = self.clock.now()
        plan = plan_ticks(self.entries, last_runs, now)
        for entry in plan.new:
            await self._record_new(entry, now)
        for due in plan.due:
            if not await self._fire(due):
                break
        return self._delay(plan.wake_at)

    # -- lease -----------------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        started = self.clock.monotonic()
        if started < self._renew_at:
            return
        was_leader = self.is_leader
        self._renew_at = started + self.options.renew_interval
        self._valid_until = -math.inf  # until the store says otherwise
        got = await self.store.acquire_lease(self.holder, self.options.lease_seconds)
        if got:
            # Counted from before the request, minus a renew interval of margin: never
            # longer than the store's own expiry.
            self._valid_until = started + self.options.lease_seconds - self.options.renew_interval
            if not was_leader:
                logger.info("beat: %s holds the lease; sending due tasks", self.holder)
        elif was_leader:
            logger.warning("beat: lost the lease to another beat; standing by")

    def _delay(self, wake_at: datetime | None) -> float:
        delay = min(self.options.max_interval, self._renew_at - self.clock.monotonic())
        if wake_at is not None:
            delay = min(delay, (wake_at - self.clock.now()).total_seconds())
        if self._retry_soon:  # a failed publish or a lost claim: do not spin on it
            delay = max(delay, min(self.options.renew_interval, self.options.max_interval))
        return max(delay, 0.0)

    # -- sending ---------------------------------------------------------------------------

    async def _record_new(self, entry: Entry, now: datetime) -> None:
        if await self.store.claim(self.holder, entry.name, None, now.timestamp()):
            first = entry.schedule.first_run(now)
            logger.debug("beat: new entry %s, first run at %s", entry.name, first)

    async def _fire(self, due: Due) -> bool:
        """Claim and send one tick; False when the lease is gone (stop sending)."""
        if not self.is_leader:
            return False
        claimed = due.tick.timestamp()
        try:
            won = await self.store.claim(self.holder, due.entry.name, due.previous, claimed)
        except BaseException:
            # The claim may have been applied before the reply was lost: undo it later.
            self._unsure.append((due.entry.name, claimed, due.previous))
            raise
        if not won:
            # Someone else moved the entry on, or the lease is gone: re-check both soon.
            self._renew_at = -math.inf
            self._retry_soon = True
            return True
        if not self.is_leader:  # paused between the check and the claim: hand the tick back
            await self._revert(due.entry.name, claimed, due.previous)
            return False
        await self._send(due, claimed)
        return True

    async def _send(self, due: Due, claimed: float) -> None:
        entry = due.entry
        task_id = tick_task_id(self.store.namespace, entry.name, due.tick)
        # The id and name as fields (of JSON log lines): the tick's message can be followed.
        extra = {"task_id": task_id, "task_name": entry.task, "entry": entry.name}
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task, extra=extra)
        try:
            await self.send(entry, task_id)
        except _PERMANENT_ERRORS as exc:
            logger.error("beat: cannot send %s (%s): %s", entry.name, entry.task, exc)
        except Exception as exc:
            # The tick is handed back and tried again on the next pass.
            self.broker_outage.failed(exc)
            self._retry_soon = True
            await self._revert(entry.name, claimed, due.previous)
        else:
            self.broker_outage.ok()
            await self._ran(due)

    async def _ran(self, due: Due) -> None:
        try:
            await self.source.ran(due.entry, due.tick)
        except Exception as exc:  # the tick was sent: only its record in the source is lost
            logger.warning("beat: could not record the run of %s: %s", due.entry.name, exc)

    async def _revert(self, entry: str, claimed: float, previous: float | None) -> None:
        try:
            await self.store.revert(self.holder, entry, claimed, previous)
        except BaseException:
            self._unsure.append((entry, claimed, previous))
            raise

    async def _settle_unsure(self) -> None:
        """Undo claims whose outcome is unknown (the store failed mid-call); each only once."""
        while self._unsure:
            entry, claimed, previous = self._unsure[0]
            await self.store.revert(self.holder, entry, claimed, previous)
            self._unsure.pop(0)

    async def _publish(self, entry: Entry, task_id: str) -> None:
        options = {"task_id": task_id, **entry.options}
        task = self.app.tasks.get(entry.task)
        request = self.app.build_request(entry.task, entry.args, entry.kwargs, options, task)
        await self.app.apublish([request])


def _deadline(conf: Mapping[str, Any] | None) -> float | None:
    """How long an outage may last before beat says so at error level: the broker
    connection policy's deadline (the lease, 30 s, by default)."""
    if conf is None:
        return LEASE
    options = dict(conf.get("broker_transport_options") or {})
    value = options.get("retry_deadline", broker_retry_options(conf, options)["retry_deadline"])
    return None if value is None else float(value)


async def _sleep_unless(stop: asyncio.Event, delay: float) -> None:
    try:
        async with asyncio.timeout(delay):  # (not wait_for: a cancel may be lost)
            await stop.wait()
    except TimeoutError:
        pass


async def run_embedded_beat(app: Any, stop: asyncio.Event) -> None:
    """Run beat inside a worker (``worker -B``) until ``stop`` is set; never raises."""
    try:
        beat = Beat(
            app,
            store_for_app(app),
            options=BeatOptions.from_conf(app.conf),
            embedded=True,
        )
        logger.info("beat: embedded in this worker, store %s", mask_url(beat.store.url))
        await beat.run(stop)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("beat: the embedded scheduler stopped")


async def stop_embedded_beat(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Wait for an embedded beat to finish after its stop event was set; cancel it if slow."""
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
