"""The application object: settings, the task registry, and publishing.

``Celery`` (alias ``Celeriac``) holds configuration and tasks and sends messages.
It owns no worker or beat code. Transports and backends are created per event
loop, lazily, from the configured URLs; sync callers reach them through the
private portal loop (``celeriac._portal``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import functools
import importlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from celeriac import _state, bulk, clock, signals
from celeriac import result as _result
from celeriac._portal import get_portal, sync_twin
from celeriac.annotations import annotate, prepare_annotations
from celeriac.announce import announce_publish, announce_published
from celeriac.app.amqp import AMQP
from celeriac.app.backend import BackendView
from celeriac.app.connection import Connection, ConnectionPool, not_offered
from celeriac.backends import ResultBackend, backend_from_url, can_hold_results
from celeriac.canvas.signature import Signature, as_signature, signature
from celeriac.conf import Settings, check_settings
from celeriac.conf.checks import warn_once
from celeriac.conf.report import bug_report
from celeriac.conf.settings import load_object
from celeriac.context import add_child
from celeriac.control import Control
from celeriac.engines.options import (
    backend_options,
    broker_options,
    compresses_results,
    delayed_delivery,
    publisher_options,
)
from celeriac.events.api import AppEvents
from celeriac.exceptions import (
    ImproperlyConfigured,
    NotRegistered,
    OperationalError,
    SerializationError,
)
from celeriac.fixups.django import fixup as django_fixup
from celeriac.fixups.django import installed_apps as installed_django_apps
from celeriac.local import Proxy
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.ids import uuid4
from celeriac.protocol.message import encode_like, encode_task
from celeriac.protocol.result_codec import result_codec
from celeriac.publishing import PERSISTENT, PublishRequest, TaskDefaults, build_message
from celeriac.reconnect import publish_policy, unreachable
from celeriac.retry import RetryPolicy
from celeriac.routing import Router
from celeriac.task import BoundTaskDecorator, Task, TaskDecorator, make_task_decorator, shared_task
from celeriac.transport import (
    Outgoing,
    QueueSpec,
    Transport,
    blocking_publisher_from_url,
    transport_from_url,
)

if TYPE_CHECKING:
    from celeriac.task import AsyncTask

__all__ = ["Celeriac", "Celery", "app_or_default", "bugreport", "current_app", "shared_task"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

logger = logging.getLogger("celeriac.app")

DEFAULT_BROKER = "sqlite://"


class _CurrentApp(Proxy):
    """``current_app``: the most recently created app (or a default one), as Celery's
    proxy: ``current_app.conf``, ``current_app.send_task(...)``,
    ``isinstance(current_app, Celery)``. Calling it, ``current_app()``, gives the app
    itself."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Celery:
        if args or kwargs:
            raise TypeError("current_app() takes no arguments: it returns the current app")
        app: Celery = self._get_current_object()
        return app


current_app = _CurrentApp(_state.get_current_app, name="current_app")


def bugreport(app: Celery | None = None) -> str:
    """The text of ``celeriac report`` for ``app`` (the current app by default)."""
    return bug_report(app or current_app())


def app_or_default(app: Celery | None = None) -> Celery:
    """``app``, or the current app when it is None (Celery's helper)."""
    return app if app is not None else current_app()


@dataclass
class _LoopResources:
    """Connections owned by one event loop."""

    urls: tuple[str, str | None]
    transport: Transport | None = None
    backend: ResultBackend | None = None
    declared: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _SyncPublishing:
    """The sync API's calling-thread publisher for the current broker, one per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._publisher: Any = None
        self.declared: set[str] = set()
        """Queues declared for this publisher (through the portal, once each)."""
        self.reply_queue: str | None = None
        """The portal loop's rpc:// reply queue, once asked for."""

    def publisher(self, app: Celery) -> Any:
        """The publisher for ``app``'s broker, or None where the broker has none."""
        options = publisher_options(app.conf, app.broker_url)
        key = (app.broker_url, repr(options), os.getpid())
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._publisher = blocking_publisher_from_url(app.broker_url, options)
                    self.declared = set()
                    self.reply_queue = None
                    self._key = key
        return self._publisher

    def close(self) -> None:
        """Drop the publisher and its connections."""
        with self._lock:
            if self._publisher is not None and self._key and self._key[-1] == os.getpid():
                self._publisher.close()
            self._publisher, self._key = None, None
            self.reply_queue = None


class Celery:
    """A celeriac application: ``app = Celery('tasks', broker=..., backend=...)``."""

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        include: Sequence[str] | None = None,
        namespace: str | None = None,
        config_source: Any = None,
        set_as_current: bool = True,
        task_cls: type[Task] | str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self.conf = Settings()
        self.namespace = namespace
        if broker:
            self.conf["broker_url"] = broker
        if backend:
            self.conf["result_backend"] = backend
        if include:
            self.conf["include"] = tuple(include)
        self.conf.update(settings)  # an unknown name is kept, with a warning (as Celery keeps it)
        if config_source is not None:
            self.conf.from_object(config_source, namespace)
        self.tasks: dict[str, Task] = {}
        self.task_cls = task_cls
        self._task_class: type[Task] | None = None
        self.on_after_configure = signals.Signal("on_after_configure")
        self.on_after_finalize = signals.Signal("on_after_finalize")
        self.on_configure = signals.Signal("on_configure")
        self.periodic_tasks: list[Any] = []
        self._configured = False
        self._finalized = False
        self._prepared = False
        self._annotations: list[Any] = []
        self._resources: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources] = (
            weakref.WeakKeyDictionary()
        )
        self._router: Router | None = None
        self._router_version = -1
        self._publish_defaults: dict[str, TaskDefaults] = {}
        """Per task name, what its publishes fall back to (see celeriac.publishing)."""
        self.GroupResult = _result.bound_group_result(self)
        """``app.GroupResult(gid, results)`` and ``app.GroupResult.restore(gid)``."""
        self._lock = threading.Lock()
        self._blocking = _SyncPublishing()
        self._django = django_fixup(self)
        self._discoveries: list[tuple[Iterable[str] | Callable[[], Iterable[str]] | None, str]] = []
        for make in list(_state.shared_task_constructors()):
            make(self)
        if set_as_current:
            _state.set_current_app(self)

    def __repr__(self) -> str:
        return f"<Celery {self.main or '__main__'} at {id(self):#x}>"

    # configuration ----------------------------------------------------------------------
    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None:
        """Load settings from a module, class, dict or import path."""
        self.conf.from_object(obj, namespace or self.namespace, silent=silent)
        self._router = None

    def config_from_envvar(
        self,
        variable_name: str,
        silent: bool = False,
        force: bool = False,
        namespace: str | None = None,
    ) -> None:
        """Load settings from the module named by an environment variable."""
        self.conf.from_envvar(variable_name, namespace or self.namespace, silent=silent)
        self._router = None

    def setup_security(
        self,
        allowed_serializers: Any = None,
        key: str | None = None,
        key_password: bytes | str | None = None,
        cert: str | None = None,
        store: str | None = None,
        digest: str | None = None,
        serializer: str = "json",
    ) -> None:
        """Sign the messages this app sends and verify those it receives (Celery's ``auth``
        serializer; :mod:`celeriac.signing`). Arguments default to the ``security_*`` settings."""
        from celeriac.signing import setup_security  # noqa: PLC0415 - most apps never sign

        setup_security(
            self.conf, allowed_serializers, key, key_password, cert, store, digest, serializer
        )

    def finalize(self) -> None:
        """Fire ``on_after_configure`` and ``on_after_finalize`` once (workers and beat do)."""
        with self._lock:
            if self._finalized:
                return
            self._finalized = True
        self.on_configure.send(sender=self)
        self.on_after_configure.send(sender=self, source=self.conf)
        self.on_after_finalize.send(sender=self)
        self._prepare()

    def _prepare(self) -> None:
        """Once, at worker and beat start and before the first task is sent: check the
        settings (``celeriac.conf.checks``) and apply ``task_annotations`` to the tasks."""
        if self._prepared:
            return
        check_settings(self.conf)  # raises for settings celeriac cannot start with
        annotations = prepare_annotations(self.conf["task_annotations"])
        with self._lock:
            if not self._prepared:
                self._annotations = annotations
                for task in list(self.tasks.values()):
                    annotate(task, annotations)
                self._prepared = True

    def import_default_modules(self) -> None:
        """Send ``import_modules`` (a receiver's exception is raised, as Celery's loader
        does), then import the modules listed in ``imports`` and ``include`` and those that
        ``autodiscover_tasks()`` asked for (workers and beat call this at start)."""
        for _, response in signals.import_modules.send(sender=self):
            if isinstance(response, Exception):
                raise response
        if self._django is not None:
            self._django.on_import_modules()
        for module in (*self.conf["imports"], *self.conf["include"]):
            importlib.import_module(module)
        discoveries, self._discoveries = self._discoveries, []
        for packages, related_name in discoveries:
            self._discover(packages, related_name)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package that has one.

        With no ``packages``, the installed Django apps (when ``DJANGO_SETTINGS_MODULE`` is
        set). As in Celery the import waits until a worker or beat imports its task modules,
        unless ``force`` is true; a process that only sends tasks never imports them."""
        if packages is None and self._django is None:
            warn_once(
                "autodiscover-without-django",
                "autodiscover_tasks() without packages looks for Django apps, but "
                "DJANGO_SETTINGS_MODULE is not set: name the packages to search",
            )
            return
        if force:
            self._discover(packages, related_name)
        else:
            self._discoveries.append((packages, related_name))

    def _discover(
        self, packages: Iterable[str] | Callable[[], Iterable[str]] | None, related_name: str
    ) -> None:
        if packages is None:
            names: Iterable[str] = installed_django_apps()
        else:
            names = packages() if callable(packages) else packages
        for package in names:
            try:
                importlib.import_module(f"{package}.{related_name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{related_name}":
                    raise

    @property
    def router(self) -> Router:
        """The router built from the current routing settings (rebuilt when they change)."""
        if self._router is None or self._router_version != self.conf.version:
            self._router = Router(self.conf)
            self._router_version = self.conf.version
        return self._router

    @property
    def broker_url(self) -> str:
        """The configured broker, or the embedded SQLite file; a list of URLs (Celery's
        failover list form) is joined with ``;``."""
        url = self.conf["broker_url"]
        if isinstance(url, (list, tuple)):
            return ";".join(str(each) for each in url)
        return str(url or DEFAULT_BROKER)

    @property
    def result_backend_url(self) -> str | None:
        """The configured result backend, or the broker's store when it can hold results."""
        url = self.conf["result_backend"]
        if url == "database" and self.conf["database_url"]:
            return f"db+{self.conf['database_url']}"  # Celery's way of naming the database
        if url:
            return str(url)
        broker = self.broker_url
        return broker if can_hold_results(broker) else None

    # tasks ------------------------------------------------------------------------------
    # The task keeps the function's types (see celeriac.task.Task); a bound task's first
    # parameter (the task itself) is not one of the caller's arguments.
    @overload
    def task(self, fun: Callable[_P, Coroutine[Any, Any, _R]], /) -> AsyncTask[_P, _R]: ...

    @overload
    def task(self, fun: Callable[_P, _R], /) -> Task[_P, _R]: ...

    @overload
    def task(self, *, bind: Literal[True], **options: Any) -> BoundTaskDecorator: ...

    @overload
    def task(self, *, bind: Literal[False] = ..., **options: Any) -> TaskDecorator: ...

    @overload
    def task(self, *, bind: bool, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...

    def task(self, *args: Any, **options: Any) -> Any:
        """Turn a function into a task: ``@app.task`` or ``@app.task(bind=True, ...)``."""
        return make_task_decorator(self, args, options)

    def register_task(self, task: Task) -> Task:
        """Add a task (instance) to the registry under its name."""
        if self._prepared:
            annotate(task, self._annotations)
        self.tasks[task.name] = task
        return task

    def get_task(self, name: str) -> Task:
        """The registered task ``name``; NotRegistered with close matches otherwise."""
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(_not_registered_message(name, self.tasks)) from None

    def add_periodic_task(
        self,
        schedule: Any,
        sig: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        **opts: Any,
    ) -> str:
        """Register a periodic task for beat; both schedules of the same signature are kept."""
        entry = {
            "schedule": schedule,
            "sig": sig,
            "args": tuple(args),
            "kwargs": dict(kwargs or {}),
            "name": name,
            "options": opts,
        }
        self.periodic_tasks.append(entry)
        return name or f"{getattr(sig, 'name', sig)}@{schedule!r}"

    @property
    def events(self) -> AppEvents:
        """Celery's ``app.events``: ``Dispatcher``, ``Receiver`` and ``State`` on this app."""
        found: AppEvents | None = self.__dict__.get("_events")
        if found is None:
            found = self.__dict__["_events"] = AppEvents(self)
        return found

    # resources per event loop -----------------------------------------------------------
    def _loop_resources(self) -> _LoopResources:
        loop = asyncio.get_running_loop()
        res = self._resources.get(loop)
        urls = (self.broker_url, self.result_backend_url)
        if res is None or res.urls != urls:
            # New loop, or the URLs were reconfigured since: connect afresh.
            res = self._resources[loop] = _LoopResources(urls=urls)
        return res

    async def aget_transport(self, *, first_try_only: bool = False) -> Transport:
        """The connected transport for the running loop.

        A first connection retries as ``broker_connection_retry_on_startup`` says (a worker
        starting); ``first_try_only`` makes a single attempt instead, for a publish that
        retries under its own policy, as Celery's clients do."""
        res = self._loop_resources()
        if res.transport is None:
            async with res.lock:
                if res.transport is None:
                    options = broker_options(self.conf, self.broker_url)
                    if first_try_only:
                        options = {**options, "connect_max_retries": 0}
                    transport = transport_from_url(self.broker_url, options)
                    await transport.connect()
                    res.transport = transport
        return res.transport

    async def _publishing_transport(self, requests: Sequence[PublishRequest]) -> Transport:
        """The transport to publish ``requests`` on: connected under their publish policy
        (``task_publish_retry_policy``, ``retry=False``: one attempt) when not yet open."""
        res = self._loop_resources()
        if res.transport is not None:
            return res.transport
        policy = self._publish_policy(requests)
        if policy is None:
            return await self.aget_transport(first_try_only=True)
        transport: Transport = await policy.call(
            lambda: self.aget_transport(first_try_only=True),
            retry_on=(ConnectionError,),
            what="connecting to publish",
            give_up=self._publish_failed,
        )
        return transport

    async def aget_backend(self) -> ResultBackend:
        """The connected result backend for the running loop; error when results are disabled."""
        res = self._loop_resources()
        if res.backend is None:
            url = self.result_backend_url
            if url is None:
                raise ImproperlyConfigured(
                    "no result backend configured: set result_backend (e.g. backend='redis://...')"
                )
            async with res.lock:
                if res.backend is None:
                    backend = backend_from_url(
                        url,
                        serializer=self.result_codec(url),
                        expires=_seconds(self.conf["result_expires"]),
                        options=backend_options(self.conf, url, self.broker_url),
                    )
                    await backend.connect()
                    res.backend = backend
        return res.backend

    def result_codec(self, url: str) -> Any:
        """How the result store at ``url`` encodes results (serializer, compression, accept)."""
        compressed = compresses_results(url)
        if self.conf["result_compression"] and not compressed:
            warn_once(
                f"compression:{url}",
                "result_compression=%r has no effect: this result backend stores results"
                " uncompressed (as Celery's database and rpc backends do)",
                self.conf["result_compression"],
            )
        return result_codec(self.conf, compressed=compressed)

    async def _set_reply_to(self, requests: Sequence[PublishRequest], url: str | None) -> None:
        """With rpc:// results (``url``), replies go to this client's queue, declared first."""
        if url is None or not url.startswith("rpc:"):
            return
        oid = (await self.aget_backend()).reply_queue
        for req in requests:
            if oid and not req.message.reply_to:
                req.message.reply_to = oid

    async def aclose(self) -> None:
        """Close the running loop's connections."""
        res = self._resources.pop(asyncio.get_running_loop(), None)
        if res is None:
            return
        if res.transport is not None:
            control = self.__dict__.get("control")  # only if it was used
            if control is not None:
                await control.arelease(res.transport)
            await res.transport.close()
        if res.backend is not None:
            await res.backend.close()

    def close(self) -> None:
        """Close the connections the sync API opened."""
        self._blocking.close()
        _result.close_blocking_waiter(self)
        get_portal().run(self.aclose())

    def run_sync(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine of this app from sync code, on the portal loop."""
        return get_portal().run(coro, timeout)

    # publishing -------------------------------------------------------------------------
    async def apublish(self, requests: Sequence[PublishRequest]) -> None:
        """Encode and publish task messages in one batch, declaring their queues once.

        Every message is encoded before any is sent; more than ``bulk.CHUNK`` go out in
        several transport publishes of that many."""
        await self._apublish(requests, None)

    async def _apublish(
        self, requests: Sequence[PublishRequest], owners: Sequence[int] | None
    ) -> None:
        """:meth:`apublish`; ``owners`` (``send_many``) names an item in encoding errors."""
        transport = await self._aprepare(requests)
        outgoing = self._outgoing(requests, owners)
        for start in range(0, len(requests), bulk.CHUNK):
            chunk = requests[start : start + bulk.CHUNK]
            sent = outgoing[start : start + bulk.CHUNK]
            await self._send(transport, sent, chunk)
            self._announce_published(chunk, sent)

    async def _aprepare(self, requests: Sequence[PublishRequest]) -> Transport:
        """The transport to publish ``requests`` on, their reply queue set (rpc:// results)
        and their queues declared."""
        res = self._loop_resources()
        transport = await self._publishing_transport(requests)
        await self._set_reply_to(requests, res.urls[1])
        to_declare = _undeclared(requests, res.declared)
        if to_declare:
            await transport.declare(to_declare)
            res.declared.update(q.name for q in to_declare)
        return transport

    async def _send(
        self, transport: Transport, outgoing: list[Outgoing], requests: Sequence[PublishRequest]
    ) -> None:
        """Publish, again after connection errors as ``task_publish_retry_policy`` (or the
        requests' own ``retry``/``retry_policy``) says; then raise OperationalError."""
        policy = self._publish_policy(requests)
        if policy is None:
            await transport.publish(outgoing)
            return
        await policy.call(
            lambda: transport.publish(outgoing),
            retry_on=(ConnectionError,),
            what="publish",
            give_up=self._publish_failed,
        )

    def _publish_failed(self, exc: BaseException, attempts: int) -> BaseException:
        """What a publish that ran out of tries raises: OperationalError naming the broker."""
        if isinstance(exc, OperationalError):
            return exc
        return unreachable(self.broker_url, "publish", exc, attempts)

    def _publish_policy(self, requests: Sequence[PublishRequest]) -> RetryPolicy | None:
        """How this batch's publish is retried (its first request's options decide)."""
        first = requests[0] if requests else None
        if first is None:
            return publish_policy(self.conf)
        return publish_policy(self.conf, first.retry, first.retry_policy)

    def _publish_here(self, *, requests: Sequence[PublishRequest]) -> None:
        """A Redis or RabbitMQ broker publishes messages due now straight from the calling
        thread (no hop to the portal's loop), once their queues were declared through
        :meth:`apublish`; everything else goes through :meth:`apublish`."""
        publisher = self._blocking.publisher(self)
        if publisher is None or _undeclared(requests, self._blocking.declared):
            self.run_sync(self.apublish(requests))
            self._blocking.declared.update(r.route.queue.name for r in requests if r.route.queue)
            return
        self._set_reply_to_here(requests)
        outgoing = self._outgoing(requests)
        try:
            sent = publisher.publish(outgoing)
        except OperationalError as exc:  # unreachable, or a reply lost: as the policy says
            if self._publish_policy(requests) is None or getattr(exc, "refused", False):
                raise  # (refused: the broker said no, e.g. a full queue; asking again won't do)
            if getattr(exc, "maybe_sent", True):  # (a blocking publisher may say it was not)
                logger.warning("%s; publishing again (the message may be queued twice)", exc)
            sent = False
        if not sent:
            self.run_sync(self._apublish_outgoing(outgoing, requests))
        self._announce_published(requests, outgoing)

    publish = sync_twin(apublish, here=_publish_here)

    def _set_reply_to_here(self, requests: Sequence[PublishRequest]) -> None:
        """:meth:`_set_reply_to` for the calling-thread path: the portal loop's rpc:// reply
        queue, asked for once per publisher."""
        url = self.result_backend_url
        if url is None or not url.startswith("rpc:"):
            return
        if all(req.message.reply_to for req in requests):
            return
        oid = self._blocking.reply_queue
        if oid is None:
            oid = self._blocking.reply_queue = self.run_sync(self._reply_queue())
        for req in requests:
            if oid and not req.message.reply_to:
                req.message.reply_to = oid

    async def _reply_queue(self) -> str | None:
        oid: str | None = (await self.aget_backend()).reply_queue
        return oid

    async def _apublish_outgoing(
        self, outgoing: list[Outgoing], requests: Sequence[PublishRequest]
    ) -> None:
        await self._send(await self._publishing_transport(requests), outgoing, requests)

    def _outgoing(
        self, requests: Sequence[PublishRequest], owners: Sequence[int] | None = None
    ) -> list[Outgoing]:
        """Encode each request and send ``before_task_publish`` with what will be sent;
        with ``owners``, a SerializationError names the ``send_many`` item it came from."""
        parked = delayed_delivery(self.conf)
        if owners is None:
            return [self._encode(req, parked) for req in requests]
        outgoing = []
        # A request made ``like`` an earlier one is encoded from that one's envelope,
        # unless receivers of before_task_publish may have changed it.
        templates: dict[int, Envelope] | None = (
            None if signals.before_task_publish.receivers else {}
        )
        for index, req in enumerate(requests):
            try:
                outgoing.append(self._encode(req, parked, templates))
            except SerializationError as exc:
                bulk.name_item(exc, owners[index], "send_many")
                raise
        return outgoing

    def _encode(
        self, req: PublishRequest, parked: bool, templates: dict[int, Envelope] | None = None
    ) -> Outgoing:
        """One request's Outgoing message.

        An ETA task goes on its queue with its ``eta`` header, as Celery sends it (any
        worker, Celery's too, runs it; celeriac workers move far ones into the broker's
        delayed store), unless ``broker_delayed_delivery`` (``parked``) puts it in that
        store now."""
        like = None if templates is None or req.like is None else templates.get(id(req.like))
        if like is not None:
            envelope = encode_like(req.message, like, req.serializer)
        else:
            envelope = encode_task(req.message, req.serializer, req.compression)
            if templates is not None:
                templates[id(req)] = envelope
        if req.delivery_mode != PERSISTENT:
            envelope.properties["delivery_mode"] = req.delivery_mode
        announce_publish(self, req, envelope)  # receivers may change the headers
        eta = req.message.eta
        due = parked and eta is not None and eta > _utcnow()
        not_before = eta.timestamp() if due and eta is not None else None
        return Outgoing(envelope, req.route.exchange, req.route.routing_key, not_before)

    def _announce_published(
        self, requests: Sequence[PublishRequest], outgoing: Sequence[Outgoing]
    ) -> None:
        if self.conf["task_send_sent_event"] and self.events.supported:
            self.events.sent.sent(requests)
        for req, out in zip(requests, outgoing, strict=True):
            announce_published(req, out.envelope)

    def build_request(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        task: Task | None = None,
    ) -> PublishRequest:
        """Turn ``apply_async`` arguments into a message and a route."""
        if not self._prepared:
            self._prepare()
        return build_message(self, name, args, kwargs, options, task)

    async def asend_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> _result.AsyncResult:
        """Send a task by name (the worker must know it); returns its AsyncResult."""
        task = self.tasks.get(name)
        request = self.build_request(name, args, kwargs, options, task)
        await self.apublish([request])
        return add_child(self.AsyncResult(request.message.id, task_name=name))

    def _send_task_here(
        self,
        *,
        name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        **options: Any,
    ) -> _result.AsyncResult:
        """It publishes from the calling thread where the broker can (see ``publish``)."""
        request = self.build_request(name, args, kwargs, options, self.tasks.get(name))
        self.publish([request])
        return add_child(self.AsyncResult(request.message.id, task_name=name))

    send_task = sync_twin(asend_task, here=_send_task_here)

    async def asend_many(
        self, signatures: Iterable[Any], **options: Any
    ) -> list[_result.AsyncResult]:
        """Publish many task calls at once; their results, in the order given.

        ``signatures`` are signatures (``add.s(1, 2)``, ``add.s(3, 4).set(countdown=5)``,
        chains, groups...) or their dicts; ``options`` (any of ``apply_async``'s) apply to
        every one, over its own. Each plain signature must name a task of this app. All are
        checked and encoded before the first is sent: an error names the item's index.
        Large batches go out in chunks of ``celeriac.bulk.CHUNK``, each one publish (see
        docs/publishing.md). With ``task_always_eager``, each runs here, in order."""
        if self.conf["task_always_eager"]:
            return [as_signature(sig, self).apply(**options) for sig in signatures]
        batch = bulk.prepare(self, signatures, options)
        await self._apublish_batch(batch)
        return batch.results

    def _send_many_here(
        self, *, signatures: Iterable[Any], **options: Any
    ) -> list[_result.AsyncResult]:
        """The messages are built in the calling thread (a task publishing sees its own
        request: parent and root ids), then published from the portal's loop."""
        if self.conf["task_always_eager"]:
            return [as_signature(sig, self).apply(**options) for sig in signatures]
        batch = bulk.prepare(self, signatures, options)
        self.run_sync(self._apublish_batch(batch))
        return batch.results

    async def _apublish_batch(self, batch: bulk.Batch) -> None:
        await batch.dispatch.write_chord_sizes()
        if batch.dispatch.requests:
            await self._apublish(batch.dispatch.requests, batch.owners)

    send_many = sync_twin(asend_many, here=_send_many_here)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> _result.AsyncResult:
        """A handle on the result of task ``task_id``."""
        return _result.AsyncResult(task_id, app=self, **kwargs)

    def signature(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature bound to this app: ``app.signature("proj.add", (2, 2))`` (Celery's)."""
        return signature(*args, **{**kwargs, "app": self})

    # control ----------------------------------------------------------------------------
    @functools.cached_property
    def control(self) -> Control:
        """Remote control of the workers (Celery's ``app.control``)."""
        return Control(self)

    async def arevoke(
        self,
        task_ids: str | Sequence[str],
        *,
        expires: float = 86400 * 7,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Revoke tasks: persisted, so workers skip them now or when they start later, and
        told to running workers over remote control (``terminate`` kills those running)."""
        await self.apersist_revokes(task_ids, expires=expires)
        arguments = {"task_id": task_ids, "terminate": terminate, "signal": signal or "SIGTERM"}
        await self.control.abroadcast("revoke", arguments)

    revoke = sync_twin(arevoke, via=lambda app: app)  # the app runs its own coroutines

    async def apersist_revokes(
        self, task_ids: str | Sequence[str], *, expires: float = 86400 * 7
    ) -> None:
        """Persist revokes in the broker for ``expires`` seconds (workers poll them)."""
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        transport = await self.aget_transport()
        await transport.revoke(ids, expires=_utcnow().timestamp() + expires)

    def uuid(self) -> str:
        """A new task id."""
        return uuid4()

    # Celery's app objects projects reach for (see celeriac.app.connection, .backend, .amqp)
    def set_current(self) -> None:
        """Make this the app ``current_app`` returns."""
        _state.set_current_app(self)

    def set_default(self) -> None:
        """Make this the app used where none is given (celeriac has one current app, so
        this is :meth:`set_current`)."""
        _state.set_current_app(self)

    def connection_for_write(self, url: str | None = None, **_: Any) -> Connection:
        """A connection to the broker (kombu's ``Connection`` surface that projects use)."""
        return Connection(self, url)

    connection = connection_for_read = broker_connection = connection_for_write

    def connection_or_acquire(self, connection: Any = None, **_: Any) -> Connection:
        """``connection`` when given, else a connection from :attr:`pool`."""
        return connection if isinstance(connection, Connection) else self.pool.acquire()

    @property
    def pool(self) -> ConnectionPool:
        """Broker connections, ``with app.pool.acquire(block=True) as conn``."""
        return ConnectionPool(self)

    @property
    def producer_pool(self) -> Any:
        """Not offered: celeriac builds no kombu producers (NotImplementedError saying what
        to use instead)."""
        raise not_offered(
            self,
            "producer_pool",
            frozenset({"producer_pool"}),
            "celeriac builds no kombu producers; publish with task.apply_async() or"
            " app.send_task()",
        )

    @property
    def backend(self) -> BackendView:
        """The result store, from sync code: ``app.backend.get_task_meta(task_id)``."""
        return BackendView(self)

    @property
    def amqp(self) -> AMQP:
        """The queues and router (``app.amqp.queues``)."""
        return AMQP(self)

    # Last in the class body: annotations above it name the module-level Task class.
    @property
    def Task(self) -> type[Task]:
        """The base class of this app's tasks (``class MyTask(app.Task)``): ``task_cls``
        (a class or its import path), bound to this app."""
        if self._task_class is None:
            base = self.task_cls
            if isinstance(base, str):
                base = load_object(base)
            base = base or Task
            self._task_class = type(
                base.__name__, (base,), {"_app": self, "__module__": base.__module__}
            )
        return self._task_class


Celeriac = Celery
_state.set_default_app_factory(lambda: Celery("default"))


def _undeclared(requests: Sequence[PublishRequest], declared: set[str]) -> list[QueueSpec]:
    """The queues of ``requests`` not yet declared, once each."""
    found: dict[str, QueueSpec] = {}
    for req in requests:
        queue = req.route.queue
        if queue is not None and queue.name not in declared:
            found.setdefault(queue.name, queue)
    return list(found.values())


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


def _utcnow() -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.wall(), dt.UTC)


def _not_registered_message(name: str, tasks: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(tasks), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"task {name!r} is not registered{hint}"
