"""What a worker answers to remote control: Celery's inspect and control commands.

Each command is a coroutine ``command(node, **arguments)`` registered by name in
:data:`COMMANDS`, with Celery's names, arguments and reply shapes (``{"ok": ...}`` and
``{"error": ...}`` for control commands; lists and objects for inspect ones). The
worker's side of each command is reached through the :class:`Node`, which gives the
commands the worker's state without the worker knowing about any command.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import resource
import signal as signals
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from celeriac.conf.report import bug_report
from celeriac.transport import QueueSpec
from celeriac.worker.flight import Flight
from celeriac.worker.rate_limit import parse_rate

__all__ = ["ALIASES", "COMMANDS", "Command", "Node", "WorkerSide", "ok", "nok", "request_info"]

logger = logging.getLogger("celeriac.worker.control")

NOT_RUNNING = "terminate: tasks unknown (not running on this worker)"
"""Celery's reply when no task to terminate runs here, saying why."""

REVOKE_EXPIRES = 86400 * 7
"""Seconds a revoke received over the mailbox stays persisted (as ``app.control.revoke``)."""


def ok(value: Any) -> dict[str, Any]:
    """A control command's success reply."""
    return {"ok": value}


def nok(value: Any) -> dict[str, Any]:
    """A control command's error reply."""
    return {"error": value}


class WorkerSide(Protocol):
    """What the commands need from the worker (the worker implements it)."""

    hostname: str
    app: Any
    pool_name: str
    concurrency: int

    @property
    def queues(self) -> list[QueueSpec]:
        """The queues consumed."""

    @property
    def flights(self) -> dict[str, Flight]:
        """Deliveries received and not finished, by task id."""

    @property
    def totals(self) -> dict[str, int]:
        """Tasks run since start, by name."""

    @property
    def revoked_ids(self) -> set[str]:
        """Task ids this worker skips."""

    @property
    def prefetch_limit(self) -> int:
        """Deliveries held at once."""

    @property
    def prefetch_window(self) -> dict[str, Any]:
        """How the window is sized: adaptive or fixed, its bounds, peak and average run time."""

    def pool_pids(self) -> list[int]:
        """Pids of the pool's processes (this process for the threads and in-loop pools)."""

    def pid_of(self, flight: Flight) -> int | None:
        """The pid running ``flight``'s job, when it runs in a process of its own."""

    def end_with(self, flight: Flight) -> bool:
        """End this worker's process with ``flight``'s sync task when the process is that
        task's own slot (``-P slots``); False where it is not."""

    def uptime(self) -> float:
        """Seconds since the worker started."""

    def set_rate_limit(self, task_name: str, rate: Any) -> None:
        """Apply a new rate limit to ``task_name`` at once."""

    def resize_pool(self, delta: int) -> str | None:
        """Grow (or shrink, when negative) the pool; the reason when it cannot."""

    def autoscale(self, maximum: int | None, minimum: int | None) -> tuple[int, int] | str:
        """New autoscale bounds (None keeps one): the new ``(max, min)``, or why not."""

    async def persist_revokes(self, task_ids: list[str], expires: float) -> None:
        """Persist revokes, as ``app.control.revoke`` does."""

    async def add_queue(self, spec: QueueSpec) -> None:
        """Declare ``spec`` and consume it from the next fetch on."""

    def cancel_queue(self, name: str) -> bool:
        """Stop consuming queue ``name``; False when it was not consumed."""

    def shutdown(self) -> None:
        """Begin a warm shutdown."""

    def set_task_events(self, enabled: bool) -> bool | None:
        """Switch task events; True: changed, False: already so, None: no events here."""

    def send_heartbeat(self) -> bool:
        """Send a ``worker-heartbeat`` event now; False when this worker sends no events."""


@dataclass
class Node:
    """A worker's side of the mailbox: the worker and the mailbox's clock."""

    worker: WorkerSide
    clock: Callable[[], int]


Kind = Literal["inspect", "control"]
Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Command:
    """A command: its kind, its handler, and how the command line passes it arguments
    (Celery's ``Panel.meta``): positional ``args`` as (name, type), then the rest as the
    list ``variadic``; ``signature`` is the usage shown by ``--list``."""

    kind: Kind
    handler: Handler
    args: tuple[tuple[str, Callable[[str], Any]], ...] = ()
    variadic: str | None = None
    signature: str = ""

    @property
    def help(self) -> str:
        """The first line of the handler's docstring."""
        return (self.handler.__doc__ or "").strip().splitlines()[0].replace("``", "")


COMMANDS: dict[str, Command] = {}
"""Every command a worker answers, by name (Celery's ``Panel``); aliases included."""


ALIASES: set[str] = set()
"""Names in :data:`COMMANDS` that are another command's old name (hidden from ``--list``)."""


def _command(
    kind: Kind,
    *,
    aliases: Iterable[str] = (),
    args: tuple[tuple[str, Callable[[str], Any]], ...] = (),
    variadic: str | None = None,
    signature: str = "",
) -> Callable[[H], H]:
    def register(fn: H) -> H:
        command = Command(kind, fn, args, variadic, signature)
        COMMANDS[fn.__name__] = command
        for alias in aliases:
            COMMANDS[alias] = command
            ALIASES.add(alias)
        return fn

    return register


def _flag(text: str) -> bool:
    """Celery's ``strtobool``."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


# -- requests -------------------------------------------------------------------------


def request_info(node: Node, flight: Flight) -> dict[str, Any]:
    """Celery's ``Request.info()`` of one delivery."""
    msg, delivery = flight.msg, flight.delivery
    started = flight.time_start is not None
    return {
        "id": msg.id,
        "name": msg.task,
        "args": msg.args,
        "kwargs": msg.kwargs,
        "type": msg.task,
        "hostname": node.worker.hostname,
        "time_start": flight.time_start,
        "acknowledged": started and not flight.acks_late,
        "delivery_info": {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "priority": msg.priority or 0,
            "redelivered": delivery.redelivered,
        },
        "worker_pid": node.worker.pid_of(flight) if started else None,
    }


def _is_scheduled(flight: Flight) -> bool:
    eta = flight.msg.eta
    return flight.time_start is None and eta is not None and eta > dt.datetime.now(dt.UTC)


def state_of(flight: Flight) -> str:
    """Celery's ``query_task`` state names."""
    if flight.time_start is not None:
        return "active"
    return "scheduled" if _is_scheduled(flight) else "reserved"


@_command("inspect", aliases=("dump_active",))
async def active(node: Node, safe: bool = False, **_: Any) -> list[dict[str, Any]]:
    """Tasks being executed."""
    flights = node.worker.flights.values()
    return [request_info(node, f) for f in flights if f.time_start is not None]


@_command("inspect", aliases=("dump_reserved",))
async def reserved(node: Node, **_: Any) -> list[dict[str, Any]]:
    """Tasks received and waiting to run (not scheduled for later)."""
    return [
        request_info(node, f) for f in node.worker.flights.values() if state_of(f) == "reserved"
    ]


@_command("inspect", aliases=("dump_schedule",))
async def scheduled(node: Node, **_: Any) -> list[dict[str, Any]]:
    """Tasks held until their ETA."""
    return [
        {
            "eta": f.msg.eta.isoformat() if f.msg.eta else None,
            "priority": f.msg.priority or 0,
            "request": request_info(node, f),
        }
        for f in node.worker.flights.values()
        if _is_scheduled(f)
    ]


@_command("inspect", variadic="ids", signature="[id1 [id2 [... [idN]]]]")
async def query_task(node: Node, ids: Any = (), **_: Any) -> dict[str, Any]:
    """State and info of the given task ids that this worker holds."""
    wanted = [ids] if isinstance(ids, str) else list(ids or ())
    flights = node.worker.flights
    return {
        i: [state_of(flights[i]), request_info(node, flights[i])] for i in wanted if i in flights
    }


@_command("inspect", aliases=("dump_revoked",))
async def revoked(node: Node, **_: Any) -> list[str]:
    """Revoked task ids this worker knows."""
    return sorted(node.worker.revoked_ids)


@_command(
    "inspect",
    aliases=("dump_tasks",),
    variadic="taskinfoitems",
    signature="[attr1 [attr2 [... [attrN]]]]",
)
async def registered(
    node: Node, taskinfoitems: Any = None, builtins: bool = False, **_: Any
) -> list[str]:
    """Registered task names, with Celery's ``name [attr=value ...]`` details."""
    tasks = node.worker.app.tasks
    items = [
        i
        for i in (taskinfoitems or ("exchange", "routing_key", "rate_limit"))
        if isinstance(i, str) and not i.startswith("_")
    ]
    names = sorted(n for n in tasks if builtins or not n.startswith("celery."))
    out = []
    for name in names:
        task = tasks[name]
        fields = [f"{i}={getattr(task, i)}" for i in items if getattr(task, i, None) is not None]
        out.append(f"{name} [{' '.join(fields)}]" if fields else name)
    return out


# -- the worker -----------------------------------------------------------------------


@_command("inspect")
async def ping(node: Node, **_: Any) -> dict[str, Any]:
    """Answer ``pong``."""
    return ok("pong")


@_command("inspect")
async def clock(node: Node, **_: Any) -> dict[str, Any]:
    """The mailbox's logical clock."""
    return {"clock": node.clock()}


@_command("inspect")
async def stats(node: Node, **_: Any) -> dict[str, Any]:
    """Worker statistics, in Celery's shape."""
    worker = node.worker
    conf = worker.app.conf
    max_tasks = conf["worker_max_tasks_per_child"]
    return {
        "total": dict(worker.totals),
        "pid": os.getpid(),
        "clock": str(node.clock()),
        "uptime": int(worker.uptime()),
        "pool": {
            "implementation": f"celeriac.worker.executors:{worker.pool_name}",
            "max-concurrency": worker.concurrency,
            "processes": worker.pool_pids(),
            "max-tasks-per-child": max_tasks or "N/A",
            "put-guarded-by-semaphore": False,
            "timeouts": [conf["task_soft_time_limit"] or 0, conf["task_time_limit"] or 0],
        },
        "broker": broker_info(worker.app.broker_url, conf),
        "prefetch_count": worker.prefetch_limit,
        "prefetch_window": worker.prefetch_window,
        "rusage": _rusage(),
    }


def broker_info(url: str, conf: Any) -> dict[str, Any]:
    """Celery's ``connection.info()``: the broker URL's parts (no password)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return {
        "hostname": parts.hostname,
        "userid": parts.username,
        "virtual_host": parts.path.lstrip("/") or ("/" if scheme.startswith("amqp") else ""),
        "port": port,
        "insist": False,
        "ssl": bool(conf["broker_use_ssl"]) or scheme in ("rediss", "amqps"),
        "transport": scheme,
        "connect_timeout": conf["broker_connection_timeout"],
        "transport_options": dict(conf["broker_transport_options"] or {}),
        "login_method": conf["broker_login_method"],
        "uri_prefix": None,
        "heartbeat": float(conf["broker_heartbeat"] or 0),
        "failover_strategy": "round-robin",
        "alternates": [],
    }


def _rusage() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    names = (
        "utime stime maxrss ixrss idrss isrss minflt majflt nswap inblock oublock "
        "msgsnd msgrcv nsignals nvcsw nivcsw"
    ).split()
    return {name: getattr(usage, f"ru_{name}") for name in names}


@_command("inspect")
async def report(node: Node, **_: Any) -> dict[str, Any]:
    """The bug report (``celeriac report``)."""
    return ok(bug_report(node.worker.app))


@_command(
    "inspect",
    aliases=("dump_conf",),
    args=(("with_defaults", _flag),),
    signature="[include_defaults=False]",
)
async def conf(node: Node, with_defaults: bool = False, **_: Any) -> dict[str, Any]:
    """Settings (changed ones, unless ``with_defaults``), secrets masked."""
    table: dict[str, Any] = node.worker.app.conf.table(with_defaults=with_defaults)
    return {k: v for k, v in table.items() if isinstance(k, str) and not k.startswith("__")}


@_command("inspect")
async def active_queues(node: Node, **_: Any) -> list[dict[str, Any]]:
    """The queues consumed, in kombu's ``Queue.as_dict(recurse=True)`` shape."""
    return [_queue_dict(spec) for spec in node.worker.queues]


def _queue_dict(spec: QueueSpec) -> dict[str, Any]:
    args = spec.queue_arguments or None
    return {
        "name": spec.name,
        "exchange": {
            "name": spec.exchange or spec.name,
            "type": spec.exchange_type,
            "arguments": None,
            "durable": spec.durable,
            "passive": False,
            "auto_delete": False,
            "delivery_mode": None,
            "no_declare": False,
        },
        "routing_key": spec.routing_key or spec.name,
        "queue_arguments": args,
        "binding_arguments": None,
        "consumer_arguments": None,
        "durable": spec.durable,
        "exclusive": False,
        "auto_delete": False,
        "no_ack": False,
        "alias": None,
        "bindings": [],
        "no_declare": None,
        "expires": None,
        "message_ttl": None,
        "max_length": None,
        "max_length_bytes": None,
        "max_priority": spec.max_priority,
    }


# -- control --------------------------------------------------------------------------


@_command("control", variadic="task_id", signature="[id1 [id2 [... [idN]]]]")
async def revoke(
    node: Node, task_id: Any = (), terminate: bool = False, signal: Any = None, **_: Any
) -> dict[str, Any]:
    """Revoke tasks (persisted); with ``terminate``, kill the processes running them."""
    ids = [task_id] if isinstance(task_id, str) else [str(i) for i in task_id or ()]
    worker = node.worker
    worker.revoked_ids.update(ids)
    await worker.persist_revokes(ids, REVOKE_EXPIRES)
    if terminate:
        return _terminate(node, ids, signal)
    logger.info("Tasks flagged as revoked: %s", ", ".join(ids))
    return ok(f"tasks {set(ids)} flagged as revoked")


def _terminate(node: Node, ids: list[str], signal: Any) -> dict[str, Any]:
    signum = _signal_number(signal)
    flights = node.worker.flights
    running = [flights[i] for i in ids if i in flights and flights[i].time_start is not None]
    if not running:
        return ok(NOT_RUNNING)
    done, other_pool = [], []
    for flight in running:
        pid = node.worker.pid_of(flight)
        if pid is None or pid == os.getpid():
            if node.worker.end_with(flight):  # a slot: its process is the task's own
                logger.info("Terminating %s (%s): its slot ends with it", flight.msg.id, signum)
                done.append(flight.msg.id)
            else:
                other_pool.append(flight.msg.id)
            continue
        logger.info("Terminating %s (%s)", flight.msg.id, signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        done.append(flight.msg.id)
    if other_pool and not done:
        return nok(
            f"terminate: the {node.worker.pool_name} pool cannot kill a running task "
            f"({', '.join(other_pool)} revoked, still running)"
        )
    return ok(f"terminate: {', '.join(done)}") if done else ok(NOT_RUNNING)


def _signal_number(value: Any) -> int:
    """``'KILL'``, ``'SIGKILL'``, ``9`` or None (SIGTERM) as a signal number."""
    if value is None or value == "":
        return int(signals.SIGTERM)
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    name = str(value).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None


@_command(
    "control",
    args=(("signal", str),),
    variadic="task_id",
    signature="<signal> [id1 [id2 [... [idN]]]]",
)
async def terminate(node: Node, signal: Any = None, task_id: Any = (), **_: Any) -> dict[str, Any]:
    """Revoke and kill running tasks."""
    return await revoke(node, task_id, terminate=True, signal=signal)


@_command(
    "control",
    args=(("task_name", str), ("rate_limit", str)),
    signature="<task_name> <rate_limit (e.g., 5/s | 5/m | 5/h)>",
)
async def rate_limit(
    node: Node, task_name: str = "", rate_limit: Any = None, **_: Any
) -> dict[str, Any]:
    """Set a task's rate limit on this worker (``'10/m'``; empty or 0 removes it)."""
    try:
        parse_rate(rate_limit)
    except Exception as exc:
        return nok(f"Invalid rate limit string: {exc!r}")
    task = node.worker.app.tasks.get(task_name)
    if task is None:
        logger.error("Rate limit attempt for unknown task %s", task_name)
        return nok("unknown task")
    task.rate_limit = rate_limit
    node.worker.set_rate_limit(task_name, rate_limit)
    if not rate_limit:
        logger.info("Rate limits disabled for tasks of type %s", task_name)
        return ok("rate limit disabled successfully")
    logger.info("New rate limit for tasks of type %s: %s.", task_name, rate_limit)
    return ok("new rate limit set successfully")


@_command(
    "control",
    args=(("task_name", str), ("soft", float), ("hard", float)),
    signature="<task_name> <soft_secs> [hard_secs]",
)
async def time_limit(
    node: Node, task_name: str = "", hard: Any = None, soft: Any = None, **_: Any
) -> dict[str, Any]:
    """Set a task's soft and hard time limits (seconds) on this worker."""
    task = node.worker.app.tasks.get(task_name)
    if task is None:
        logger.error("Change time limit attempt for unknown task %s", task_name)
        return nok("unknown task")
    task.soft_time_limit = float(soft) if soft is not None else None
    task.time_limit = float(hard) if hard is not None else None
    logger.info("New time limits for tasks of type %s: soft=%s hard=%s", task_name, soft, hard)
    return ok("time limits set successfully")


@_command("control")
async def shutdown(node: Node, msg: str = "Got shutdown from remote", **_: Any) -> None:
    """Warm shutdown (no reply, as Celery's)."""
    logger.warning(msg)
    node.worker.shutdown()


@_command("control", args=(("n", int),), signature="[N=1]")
async def pool_grow(node: Node, n: int = 1, **_: Any) -> dict[str, Any]:
    """Grow the pool by n processes (prefork pool)."""
    refused = node.worker.resize_pool(int(n))
    return nok(refused) if refused else ok("pool will grow")


@_command("control", args=(("n", int),), signature="[N=1]")
async def pool_shrink(node: Node, n: int = 1, **_: Any) -> dict[str, Any]:
    """Shrink the pool by n processes (prefork pool; never below one)."""
    refused = node.worker.resize_pool(-int(n))
    return nok(refused) if refused else ok("pool will shrink")


@_command("control", args=(("max", int), ("min", int)), signature="[max [min]]")
async def autoscale(node: Node, max: Any = None, min: Any = None, **_: Any) -> dict[str, Any]:
    """New bounds for a worker started with ``--autoscale`` (refused without it)."""
    bounds = node.worker.autoscale(
        None if max is None else int(max), None if min is None else int(min)
    )
    if isinstance(bounds, str):
        return nok(bounds)
    return ok(f"autoscale now max={bounds[0]} min={bounds[1]}")


@_command(
    "control",
    args=(("queue", str), ("exchange", str), ("exchange_type", str), ("routing_key", str)),
    signature="<queue> [exchange [type [routing_key]]]",
)
async def add_consumer(
    node: Node,
    queue: str = "",
    exchange: str | None = None,
    exchange_type: str | None = None,
    routing_key: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Start consuming ``queue`` (declared, bound to ``exchange`` when given)."""
    if not queue:
        return nok("add_consumer needs a queue name")
    if any(spec.name == queue for spec in node.worker.queues):
        return ok(f"already consuming from {queue!r}")
    spec = QueueSpec(
        name=queue,
        exchange=exchange or queue,
        exchange_type=exchange_type or "direct",
        routing_key=routing_key or queue,
    )
    await node.worker.add_queue(spec)
    return ok(f"add consumer {queue}")


@_command("control", args=(("queue", str),), signature="<queue>")
async def cancel_consumer(node: Node, queue: str = "", **_: Any) -> dict[str, Any]:
    """Stop consuming ``queue``."""
    node.worker.cancel_queue(queue)
    return ok(f"no longer consuming from {queue}")


@_command("control")
async def enable_events(node: Node, **_: Any) -> dict[str, Any]:
    """Start sending task events."""
    return _switch_events(node, True)


@_command("control")
async def disable_events(node: Node, **_: Any) -> dict[str, Any]:
    """Stop sending task events."""
    return _switch_events(node, False)


def _switch_events(node: Node, enabled: bool) -> dict[str, Any]:
    """Celery's replies: changed, already so, or no dispatcher."""
    changed = node.worker.set_task_events(enabled)
    if changed is None:
        return nok("event dispatcher unavailable")
    word = "enabled" if enabled else "disabled"
    return ok(f"task events {word}" if changed else f"task events already {word}")


@_command("control")
async def heartbeat(node: Node, **_: Any) -> None:
    """Send a ``worker-heartbeat`` event now (Celery replies None)."""
    node.worker.send_heartbeat()
