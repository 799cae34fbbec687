"""The worker: consume task messages and run them, until told to stop.

``Worker.run`` reads top to bottom: load the app, connect, start the pools, print
the banner, consume until a signal arrives, shut down. The first SIGTERM/SIGINT
is a warm shutdown (stop fetching, finish running tasks); a second one is cold
(kill running tasks; their messages go back to the queue).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from celeriac import signals
from celeriac._version import __version__
from celeriac.backends import ResultBackend
from celeriac.beat.scheduler import run_embedded_beat, stop_embedded_beat
from celeriac.conf.defaults import default_concurrency
from celeriac.context import Context, set_state_sink
from celeriac.exceptions import ImproperlyConfigured
from celeriac.masking import mask_url
from celeriac.routing import worker_direct
from celeriac.trace import arun_task
from celeriac.transport import Delivery, QueueSpec, Transport
from celeriac.worker import child
from celeriac.worker.autoscale import Autoscaler, Resizable
from celeriac.worker.events import HEARTBEAT_FREQ, WorkerEvents
from celeriac.worker.executors import POOL_NAMES, create_executor
from celeriac.worker.executors.base import Executor
from celeriac.worker.executors.inloop import InLoopExecutor
from celeriac.worker.executors.threads import ThreadExecutor
from celeriac.worker.flight import Flight, HandlerConfig
from celeriac.worker.handler import TaskHandler
from celeriac.worker.logging import setup_logging
from celeriac.worker.remote import WorkerRemote, start_remote_control
from celeriac.worker.slots import DEFAULT_SHAPE, Slot
from celeriac.worker.window import PrefetchWindow

__all__ = ["STOP_SIGNALS", "Worker", "WorkerOptions"]

logger = logging.getLogger("celeriac.worker")

FETCH_LINGER = 0.001
"""Seconds the consumer waits for room for a whole batch before fetching a smaller one."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
"""The signals that stop a worker (warm, then cold when sent again; SIGQUIT cold), and
that a supervisor passes on to its workers."""


@dataclass
class WorkerOptions:
    """Command-line options of ``celeriac worker`` (Celery's names)."""

    hostname: str | None = None
    queues: list[str] = field(default_factory=list)
    exclude_queues: list[str] = field(default_factory=list)  # -X
    concurrency: int | None = None
    pool: str | None = None
    prefetch_multiplier: int | None = None
    max_tasks_per_child: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    async_concurrency: int = 100
    banner: bool = True
    beat: bool = False  # -B: run beat in this process
    max_memory_per_child: int | None = None  # KiB; else worker_max_memory_per_child
    autoscale: tuple[int, int] | None = None  # (max, min) pool processes
    heartbeat_interval: float | None = None  # --heartbeat-interval, seconds (else 2)
    loglevel: str | None = None
    """-l: set up logging as Celery's worker program does (None: leave logging alone)."""
    logfile: str | None = None
    task_events: bool | None = None  # -E (None: the worker_send_task_events setting)
    heartbeat: bool = True  # worker-online/-heartbeat/-offline events (--without-heartbeat)


def expand_hostname(name: str | None) -> str:
    """Celery's node name: ``celery@<host>`` by default; ``%h``, ``%n``, ``%d`` expanded."""
    host = socket.gethostname()
    name = name or "celery@%h"
    short, _, domain = host.partition(".")
    name = name.replace("%h", host).replace("%n", short).replace("%d", domain).replace("%%", "%")
    return name if "@" in name else f"{name}@{host}"


class Worker:
    """Consumes the configured queues and executes tasks."""

    def __init__(
        self, app: Any, options: WorkerOptions | None = None, slot: Slot | None = None
    ) -> None:
        self.app = app
        self.options = options or WorkerOptions()
        self.slot = slot
        """This worker's place among the slots of ``-P slots`` (None: a whole worker)."""
        self.hostname = expand_hostname(self.options.hostname)
        self._configure()
        self._stopping = asyncio.Event()
        self._cold_requested = asyncio.Event()
        self._room = asyncio.Event()
        self._backlog = False
        """Whether the last fetch came back with a fixed window's worth (more may wait)."""
        self.transport: Transport | None = None
        self.backend: ResultBackend | None = None
        self.handler: TaskHandler | None = None
        self.sync_pool: Executor | None = None
        self.remote: WorkerRemote | None = None
        """Remote control's view of this worker, while its mailbox runs."""
        self.events: WorkerEvents | None = None
        """The worker's events (None: this worker sends none); remote control switches them."""
        self.exit_code = 0
        self.autoscaler: Autoscaler | None = None
        """The pool's autoscaler (``--autoscale``), or None."""

    def _configure(self) -> None:
        """Read the options and settings the worker is built from (again after
        ``celeryd_init``, whose receivers may change ``conf``, as in Celery)."""
        conf = self.app.conf
        self.concurrency = (
            self.options.concurrency or conf["worker_concurrency"] or default_concurrency()
        )
        self.pool_name = self.options.pool or conf["worker_pool"]
        if self.slot is not None:  # one thread of its own: the process is the slot
            self.pool_name, self.concurrency = DEFAULT_SHAPE, 1
            self.slot.max_tasks = (
                self.options.max_tasks_per_child or conf["worker_max_tasks_per_child"]
            )
            self.slot.max_memory = (
                self.options.max_memory_per_child or conf["worker_max_memory_per_child"]
            )
        if self.options.autoscale is not None:
            if POOL_NAMES.get(self.pool_name) != "processes":
                raise ImproperlyConfigured(
                    f"--autoscale needs the prefork pool; the {self.pool_name} pool has a "
                    "fixed size (use -c)"
                )
            self.concurrency = self.options.autoscale[0]  # the window is sized for the max
        self.prefetch_multiplier = max(
            1, self.options.prefetch_multiplier or conf["worker_prefetch_multiplier"]
        )
        if conf["worker_disable_prefetch"]:
            self.prefetch_multiplier = 1  # hold no more messages than there are slots
        # Only the default adapts: a multiplier the user chose is the window they asked for.
        explicit = bool(
            self.options.prefetch_multiplier
            or conf.is_set("worker_prefetch_multiplier")
            or conf["worker_disable_prefetch"]
        )
        self.window = PrefetchWindow(self.prefetch_multiplier, adaptive=not explicit)
        self.queues: list[QueueSpec] = self.app.router.consume_specs(
            self.options.queues, self.options.exclude_queues
        )
        if conf["worker_direct"]:
            self.queues.append(self.app.router.add(worker_direct(self.hostname)))
        if not self.queues:
            raise ImproperlyConfigured("no queue to consume: -X excludes every queue of -Q")
        self.task_events = bool(
            conf["worker_send_task_events"]
            if self.options.task_events is None
            else self.options.task_events
        )

    # top level --------------------------------------------------------------------------
    def start(self) -> int:
        """Run the worker until it is stopped; return the process exit code."""
        asyncio.run(self.run())
        return self.exit_code

    async def run(self) -> None:
        """The worker's whole life, in order (the signals in Celery's order)."""
        self._load_app()
        self._install_signal_handlers()
        # Before connecting, as Celery's: receivers may still change the queues consumed.
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=self.app.conf)
        await self._connect()
        if self.slot is not None:
            assert self.transport is not None
            await self.slot.take_over(self.transport)
        sync_pool, async_pool = await self._start_pools()
        self._create_handler(sync_pool, async_pool)
        self._start_events()
        self._print_banner()
        await self._load_revoked()
        mailbox = await start_remote_control(self, self._stopping)  # answers once ready
        signals.worker_ready.send(sender=self.handler)
        if self.slot is not None:
            self.slot.board.ready(self.slot.index)
        revoke_sync = asyncio.create_task(self._sync_revoked())
        beat = self._start_beat()
        scaler = self._start_autoscaler(sync_pool)
        try:
            await self._consume()
        finally:
            revoke_sync.cancel()
            if mailbox is not None:
                mailbox.cancel()  # at once: it would notice the stop only at its next receive
                await asyncio.gather(mailbox, return_exceptions=True)
            if scaler is not None:
                scaler.cancel()
            if beat is not None:
                await stop_embedded_beat(beat)
            await self._shutdown(sync_pool, async_pool)

    def _start_beat(self) -> asyncio.Task[None] | None:
        # Ends by itself when _stopping is set, giving its lease up.
        if not self.options.beat:
            return None
        return asyncio.create_task(run_embedded_beat(self.app, self._stopping))

    def _concurrency_text(self) -> str:
        """The banner's concurrency, as Celery prints it (``{min=1, max=4}`` with autoscale)."""
        if self.slot is not None:
            return f"{self.slot.board.count} (slots: a process each)"
        if self.options.autoscale is None:
            return f"{self.concurrency} ({self.pool_name})"
        maximum, minimum = self.options.autoscale
        return f"{{min={minimum}, max={maximum}}} ({self.pool_name})"

    def _start_autoscaler(self, pool: Executor) -> asyncio.Task[None] | None:
        if self.options.autoscale is None or not isinstance(pool, Resizable):
            return None
        maximum, minimum = self.options.autoscale
        self.autoscaler = Autoscaler(pool, maximum, minimum, lambda: self.held)
        return asyncio.create_task(self.autoscaler.run(self._stopping))

    def stop(self, *, cold: bool = False) -> None:
        """Ask for a warm (or cold) shutdown."""
        if self._stopping.is_set() or cold:
            self._cold_requested.set()
        self._stopping.set()
        self._room.set()

    # steps ------------------------------------------------------------------------------
    def _load_app(self) -> None:
        self.app.import_default_modules()
        self.app.finalize()
        signals.celeryd_init.send(
            sender=self.hostname, instance=self, conf=self.app.conf, options=vars(self.options)
        )
        self._configure()
        signals.worker_init.send(sender=self)
        if self.options.loglevel is not None:
            setup_logging(self.app, self.options.loglevel, self.options.logfile)
        if not any(not name.startswith("celery.") for name in self.app.tasks):
            # Celery starts quietly here; a worker that can run nothing is almost always a
            # missing -A, so say so rather than reject every task it receives.
            logger.warning(
                "no tasks are registered in app %r: give the app with -A/--app "
                "(e.g. celeriac -A proj worker) or list task modules in `include`",
                self.app.main,
            )

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._on_signal, signum)
            loop.add_signal_handler(signal.SIGUSR1, self._log_state)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            return
        # A supervisor (--loops, slots) forks its workers with these blocked, so that one
        # sent during start-up waits for the handlers above: let them in now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _log_state(self) -> None:
        """SIGUSR1: log the worker's counters and what each asyncio task waits on."""
        handler = self.handler
        if handler is not None:
            logger.warning(
                "%s: held %d, executing %d, settling %d, writes queued %d, room %d",
                self.hostname,
                handler.held,
                handler.executing,
                handler.settling,
                handler.settler.queued,
                self._room_for_more(),
            )
        _log_task_stacks()

    def _on_signal(self, signum: int) -> None:
        cold = self._stopping.is_set() or signum == signal.SIGQUIT
        name = signal.Signals(signum).name
        logger.warning(
            "%s received: %s shutdown%s",
            name,
            "cold" if cold else "warm",
            "" if cold else " (press again for cold)",
        )
        signals.worker_shutting_down.send(
            sender=self.hostname, sig=name, how="Cold" if cold else "Warm", exitcode=0
        )
        self.stop(cold=cold)

    async def _connect(self) -> None:
        self.transport = await self.app.aget_transport()
        await self.transport.declare(self.queues)
        if self.app.result_backend_url is not None:
            self.backend = await self.app.aget_backend()

    async def _start_pools(self) -> tuple[Executor, Executor]:
        child.bind_app(self.app, self.hostname)
        sync_pool = self._slot_pool(self.slot) if self.slot is not None else self._pool()
        async_pool = InLoopExecutor(
            _run_async_payload(self.app), concurrency=self.options.async_concurrency
        )
        await sync_pool.start()
        await async_pool.start()
        self.sync_pool = sync_pool
        return sync_pool, async_pool

    def _pool(self) -> Executor:
        """The ``-P`` pool for sync tasks."""
        conf = self.app.conf
        in_processes = POOL_NAMES.get(self.pool_name) == "processes"
        return create_executor(
            self.pool_name,
            child.run_in_child if in_processes else child.run_in_thread,
            concurrency=max(1, self.options.autoscale[1])
            if self.options.autoscale
            else self.concurrency,
            max_tasks_per_child=self.options.max_tasks_per_child
            or conf["worker_max_tasks_per_child"],
            initializer=child.initializer_for(self.pool_name),
            on_note=self._on_pool_note,
            max_memory_per_child=self.options.max_memory_per_child
            or conf["worker_max_memory_per_child"],
            before_spawn=child.before_child,
            finalizer=child.child_finalizer,
        )

    def _slot_pool(self, slot: Slot) -> Executor:
        """A slot's one thread for sync tasks, its record kept around each task; a hard time
        limit, or a task past the slot's limits, retires the slot."""
        loop = asyncio.get_running_loop()

        def retire_from_any_thread(why: str) -> None:
            loop.call_soon_threadsafe(self.retire, why)

        slot.on_retire = retire_from_any_thread
        return ThreadExecutor(
            slot.wrap(child.run_in_thread),
            concurrency=1,
            initializer=child.thread_initializer,  # worker_process_init, once per slot
            on_hard_limit=lambda: slot.retire("a task passed its hard time limit"),
        )

    def retire(self, why: str) -> None:
        """End this slot for a fresh one: fetch no more, give back the messages not started,
        finish the running task and exit (the supervisor starts the next slot)."""
        if self._stopping.is_set():
            return
        logger.info("%s: slot retiring, %s", self.hostname, why)
        if isinstance(self.sync_pool, ThreadExecutor):
            self.sync_pool.drop_queued()
        self.stop()

    def end_slot_with(self, flight: Flight) -> bool:
        """``terminate`` in a slot: the running sync task's thread cannot be killed, its
        process can. The task is given up at once (recorded REVOKED, as a killed prefork
        child's is, since it is in the revoked set), the messages not started go back, and
        the slot retires; its process ends with the thread."""
        pool = self.sync_pool
        if self.slot is None or flight.task.is_async or not isinstance(pool, ThreadExecutor):
            return False
        if flight.job is None or not pool.give_up_running(flight.job):
            return False
        self.retire("a task running in it was terminated")
        return True

    def _on_pool_note(self, note: Any) -> None:
        """A pool process's ``update_state``: written in order after the worker's STARTED."""
        if self.handler is not None:
            task_id, meta = note
            self.handler.task_state(task_id, meta)

    def _create_handler(self, sync_pool: Executor, async_pool: Executor) -> None:
        conf = self.app.conf
        assert self.transport is not None
        config = HandlerConfig(
            hostname=self.hostname,
            accept=set(conf["accept_content"]),
            acks_late=bool(conf["task_acks_late"]),
            track_started=bool(conf["task_track_started"]),
            time_limit=self.options.time_limit or conf["task_time_limit"],
            soft_time_limit=self.options.soft_time_limit or conf["task_soft_time_limit"],
            eta_hold_seconds=float(conf["worker_eta_hold_seconds"]),
            result_extended=bool(conf["result_extended"]),
            reject_on_worker_lost=bool(conf["task_reject_on_worker_lost"]),
            acks_on_failure=conf["task_acks_on_failure"],
            acks_on_timeout=conf["task_acks_on_timeout"],
            acks_on_failure_or_timeout=conf["task_acks_on_failure_or_timeout"],
            store_errors_even_if_ignored=bool(conf["task_store_errors_even_if_ignored"]),
            rate_limits=not conf["worker_disable_rate_limits"],
            default_rate_limit=conf["task_default_rate_limit"],
            max_message_size=int(conf["task_message_max_size"] or 0),
        )
        self.handler = TaskHandler(
            self.app, self.transport, self.backend, sync_pool, async_pool, config
        )
        self.handler.wake_consumer = self._room.set
        if self.window.adaptive:
            self.handler.observe_runtime = self.window.observe
        if self.slot is not None:
            self.handler.lost_reason = self.slot.board.lost_reason
        set_state_sink(self.handler.sink_from_any_thread())

    def _start_events(self) -> None:
        """Worker events (and task events with -E) where the broker can carry them."""
        assert self.handler is not None
        handler = self.handler
        if not self.app.events.supported or not (self.task_events or self.options.heartbeat):
            return  # as Celery: no dispatcher without -E when the heartbeat is off
        self.events = handler.events = WorkerEvents(
            self.app.events.Dispatcher(hostname=self.hostname),
            task_events=self.task_events,
            counts=lambda: (handler.executing, handler.processed),
            heartbeat=self.options.heartbeat,
            freq=self.options.heartbeat_interval or HEARTBEAT_FREQ,
        )
        self.events.start()

    def enable_events(self) -> bool:
        """Start sending task events (the ``enable_events`` command); False if already on."""
        return self.events is not None and self.events.enable()

    def disable_events(self) -> bool:
        """Stop sending task events (``disable_events``); False if already off."""
        return self.events is not None and self.events.disable()

    def _print_banner(self) -> None:
        if not self.options.banner:
            logger.info("%s ready.", self.hostname)
            return
        tasks = "\n".join(
            f"  . {name}" for name in sorted(self.app.tasks) if not name.startswith("celery.")
        )
        queues = "\n".join(
            f"                .> {q.name:<16} exchange={q.exchange or q.name}({q.exchange_type}) "
            f"key={q.routing_key}"
            for q in self.queues
        )
        backend = self.app.result_backend_url or "disabled"
        banner = (
            f"\n -------------- {self.hostname} v{__version__} (celeriac)\n"
            f"--- ***** ----- \n-- ******* ---- {sys.platform} python {sys.version.split()[0]}\n"
            f"- *** --- * --- \n- ** ---------- [config]\n"
            f"- ** ---------- .> app:         {self.app.main or '__main__'}:{id(self.app):#x}\n"
            f"- ** ---------- .> transport:   {mask_url(self.app.broker_url, '**')}\n"
            f"- ** ---------- .> results:     {mask_url(backend, '**')}\n"
            f"- *** --- * --- .> concurrency: {self._concurrency_text()}\n"
            f"-- ******* ---- .> task events: {self._events_line()}\n--- ***** ----- \n"
            f" -------------- [queues]\n{queues}\n\n[tasks]\n{tasks}\n"
        )
        print(banner, flush=True)
        logger.info("%s ready.", self.hostname)

    def _events_line(self) -> str:
        if self.events is None:
            return "OFF (the broker carries no events)"
        return "ON" if self.task_events else "OFF (enable -E to monitor tasks in this worker)"

    # consuming --------------------------------------------------------------------------
    @property
    def prefetch_limit(self) -> int:
        """How many deliveries may be held at once (running + waiting for a slot)."""
        return self.window.size(self.concurrency) + self._async_room()

    def _async_room(self) -> int:
        """Room for ``async def`` tasks, when the app has any (they run on the loop)."""
        if any(t.is_async for t in self.app.tasks.values()):
            return self.options.async_concurrency
        return 0

    async def _fetch(self, names: list[str], room: int) -> list[Delivery]:
        """Up to ``room`` deliveries. Beyond the fixed window, only what is waiting now, and
        only while the last fetch found a backlog (at least a fixed window's worth): a fetch
        that waits for messages takes no more than the fixed window, since what comes next
        (perhaps a burst of long tasks) should be spread across workers until its tasks
        are seen to be short; and a worker fed one task at a time pays no extra round trip."""
        assert self.transport is not None
        narrow = room
        if self.window.adaptive:
            narrow = min(room, self.window.fixed(self.concurrency) + self._async_room())
        if room > narrow and self._backlog:
            deliveries = await self.transport.fetch(names, limit=room, timeout=0.0)
            self._backlog = len(deliveries) >= narrow
            if deliveries:
                return deliveries
        deliveries = await self.transport.fetch(names, limit=narrow, timeout=1.0)
        self._backlog = len(deliveries) >= narrow
        return deliveries

    async def _consume(self) -> None:
        assert self.transport is not None and self.handler is not None
        while not self._stopping.is_set():
            room = await self._wait_for_room()
            if room <= 0:
                continue  # stopping
            names = [q.name for q in self.queues]  # remote control may change them
            if not names:
                await asyncio.sleep(1.0)
                continue
            try:
                deliveries = await self._fetch(names, room)
            except Exception:
                logger.exception("fetch failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            if self._stopping.is_set():
                await self.transport.reject(deliveries, requeue=True)
                break
            for delivery in deliveries:
                self.handler.receive(delivery)
            # Let the new jobs start before the next fetch's round trip.
            await asyncio.sleep(0)

    async def _wait_for_room(self) -> int:
        """Wait until the window can take a batch, or some room has been free for a moment.

        Fetching as soon as one place frees up would cost a broker round trip per
        finished task under load; an idle worker still fetches at once.
        """
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while not self._stopping.is_set():
            batch = max(1, self.prefetch_limit // 2)  # the window may have grown or shrunk
            room = self._room_for_more()
            if room >= batch or (deadline is not None and room > 0 and loop.time() >= deadline):
                return room
            if room > 0 and deadline is None:
                deadline = loop.time() + FETCH_LINGER
            self._room.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._room.wait()
            except TimeoutError:
                pass
        return 0

    def _room_for_more(self) -> int:
        """Free places in the prefetch window.

        A task that has run and only waits for its follow-ups to be written no longer
        counts (up to a second window's worth), so the next messages arrive while those
        writes are in flight; nor does one whose result and ack are queued, unless the
        queue of writes grows beyond a window.
        """
        assert self.handler is not None
        limit = self.prefetch_limit
        handler = self.handler
        held = handler.held - min(handler.settling, limit)
        backlog = max(0, handler.settler.queued - limit)
        return limit - held - backlog

    async def add_queue(self, spec: QueueSpec) -> None:
        """Declare ``spec`` and consume it from the next fetch on (``add_consumer``)."""
        assert self.transport is not None
        await self.transport.declare([spec])
        if all(q.name != spec.name for q in self.queues):
            self.queues = [*self.queues, spec]
            logger.info("%s: started consuming from %s", self.hostname, spec.name)

    def cancel_queue(self, name: str) -> bool:
        """Stop consuming queue ``name`` (``cancel_consumer``); False if it was not consumed."""
        kept = [q for q in self.queues if q.name != name]
        changed = len(kept) != len(self.queues)
        self.queues = kept
        if changed:
            logger.info("%s: stopped consuming from %s", self.hostname, name)
        return changed

    @property
    def held(self) -> int:
        """Deliveries this worker holds (received and not finished with)."""
        return self.handler.held if self.handler is not None else 0

    async def _load_revoked(self) -> None:
        """Read the persisted revokes, so tasks revoked while no worker ran are skipped."""
        assert self.transport is not None and self.handler is not None
        config = self.handler.config
        before = set(config.revoked)
        try:
            stored = await self.transport.revoked()
        except Exception as exc:
            logger.warning("could not read revoked ids: %s", exc)
            return
        # A revoke that came by remote control while the store was read is kept: the read
        # may predate it, and replacing the set would forget it (a terminated task would
        # then be recorded as failed, not revoked).
        config.revoked = stored | (config.revoked - before)

    async def _sync_revoked(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._load_revoked()

    # shutdown ---------------------------------------------------------------------------
    async def _wait_for_inflight_or_cold(self) -> None:
        assert self.handler is not None
        idle = asyncio.ensure_future(self.handler.idle.wait())
        cold = asyncio.ensure_future(self._cold_requested.wait())
        try:
            await asyncio.wait({idle, cold}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            cold.cancel()

    async def _shutdown(self, sync_pool: Executor, async_pool: Executor) -> None:
        watchdog = asyncio.get_running_loop().call_later(15.0, _log_slow_shutdown)
        try:
            await self._shutdown_steps(sync_pool, async_pool)
        finally:
            watchdog.cancel()

    async def _shutdown_steps(self, sync_pool: Executor, async_pool: Executor) -> None:
        if not self._cold_requested.is_set() and self.held:
            logger.info("%s: warm shutdown, waiting for %d task(s)", self.hostname, self.held)
            await self._wait_for_inflight_or_cold()
        is_cold = self._cold_requested.is_set()
        if self.handler is not None:
            self.handler.conclusion.cold_shutdown = is_cold
        await sync_pool.stop(wait=not is_cold)
        await async_pool.stop(wait=not is_cold)
        if self.handler is not None:
            try:
                await asyncio.wait_for(self.handler.idle.wait(), timeout=10)
            except TimeoutError:
                logger.warning("%d deliveries still unfinished after 10 s", self.handler.held)
            await self.handler.drain()
        if self.events is not None:
            await self.events.stop()
        set_state_sink(None)
        signals.worker_shutdown.send(sender=self)
        await self.app.aclose()


def _run_async_payload(app: Any) -> Any:
    async def run(payload: tuple[str, Context]) -> Any:
        name, request = payload
        return await arun_task(app.tasks[name], request)

    return run


def _log_slow_shutdown() -> None:
    logger.warning("shutdown is taking long; still waiting on:")
    _log_task_stacks()


def _log_task_stacks() -> None:
    """SIGUSR1: log what every asyncio task of the worker is waiting on (for debugging)."""
    for task in asyncio.all_tasks():
        lines = []
        awaitable: Any = task.get_coro()
        while awaitable is not None:
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
            if frame is not None:
                lines.append(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                )
            awaitable = getattr(awaitable, "cr_await", None) or getattr(
                awaitable, "gi_yieldfrom", None
            )
        logger.warning("task %s awaits:\n%s", task.get_name(), "\n".join(lines))
