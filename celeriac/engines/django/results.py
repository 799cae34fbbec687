"""``result_backend = "django-db"``: results in django-celery-results' tables, through its models.

What django-celery-results (2.5+) keeps, and so what celeriac writes and reads:

* ``django_celery_results_taskresult``: ``task_id`` (unique), ``status``, ``result`` (the
  result encoded with ``result_serializer`` as text: UTF-8 for JSON/YAML, base64 with
  ``content_encoding = "binary"`` for pickle/msgpack), ``content_type``,
  ``content_encoding``, ``date_done`` (set by Django on every save), ``date_created``,
  ``date_started`` (set when the state is STARTED), ``traceback``, ``meta`` (a dict encoded
  like ``result``: ``children``, the document's own ``date_done`` and every key without a
  column, such as ``group_id``), and with ``result_extended`` ``task_name``, ``task_args``,
  ``task_kwargs`` (encoded), ``worker`` and ``periodic_task_name``.
* ``django_celery_results_groupresult``: ``group_id``, ``result`` (the GroupResult's
  ``[[id, None], [[[task_id, None], None], ...]]`` encoded), ``content_type``,
  ``content_encoding``, ``date_done``.

So ``TaskResult.objects.get(task_id=...)`` and the Django admin show what a celeriac worker
stored, and a Celery client with django-celery-results reads it (and the other way round).

Every ORM call runs on one thread of the backend's own (Django's ORM is synchronous and
refuses to run on an event loop); that thread keeps one database connection, checked with
``close_old_connections`` before each call as Django does around a request, and closed by
:meth:`DjangoBackend.close`. Django must be configured (``DJANGO_SETTINGS_MODULE``) and
``django_celery_results`` installed in ``INSTALLED_APPS`` with its migrations applied;
:meth:`DjangoBackend.connect` checks both and says what is missing.

Waiting polls the table with a growing interval (option ``poll_interval``, its cap, default
0.5 s, as django-celery-results' ``subpolling_interval``). Chords are not supported: the
chord counter of django-celery-results re-reads the header results through Celery's own
API, which a celeriac worker does not run; publishing a chord says so. ``cleanup()`` deletes
rows done longer than ``result_expires`` ago, as django-celery-results' does.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from celeriac.backends.base import ChordPart, Meta
from celeriac.engines.django.orm import OrmThread, load_app_models
from celeriac.protocol.serializers import Serializer, serializer_for_content_type
from celeriac.states import READY_STATES, STARTED

__all__ = ["DjangoBackend", "decode_text", "encode_text"]

T = TypeVar("T")

_TEXT_TYPES = frozenset({"application/json", "application/x-yaml", "application/yaml"})
_COLUMNS = frozenset(
    {"task_id", "status", "result", "traceback", "name", "args", "kwargs", "worker",
     "periodic_task_name", "children"}
)  # fmt: skip
"""Document keys with a column of their own (``children`` goes to ``meta`` by itself).
``date_done`` has one too, but Django sets it to the time of the save: the document's own
value is kept in ``meta`` as well, so it reads back as written (Celery parses either)."""
_CHORDS = (
    "result_backend='django-db' does not run chords (django-celery-results' chord counter "
    "needs Celery's own worker); use redis:// or db+postgresql:// for chords"
)


def encode_text(codec: Serializer, value: Any) -> tuple[str, str, str]:
    """(content_type, content_encoding, text) of ``value`` as django-celery-results stores it."""
    raw = codec.dumps(value)
    if codec.content_type in _TEXT_TYPES:
        return codec.content_type, "utf-8", raw.decode("utf-8")
    return codec.content_type, "binary", base64.b64encode(raw).decode("ascii")


def decode_text(codec: Serializer, content_type: str, encoding: str, text: str | None) -> Any:
    """A stored value; ``content_type`` picks the decoder (a row may be another writer's)."""
    if not text:
        return None
    raw = base64.b64decode(text) if encoding == "binary" else text.encode("utf-8")
    if not content_type or content_type == codec.content_type:
        return codec.loads(raw)
    return serializer_for_content_type(content_type).loads(raw)


def _date_text(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat()


class DjangoBackend:
    """Result backend in django-celery-results' models, on the Django project's database."""

    supports_chords = False
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
        opts = dict(options or {})
        self.url = url
        self._codec = serializer
        self._expires = expires or None
        self._poll_cap = float(opts.get("poll_interval", 0.5))
        self._orm = OrmThread("celeriac-django-results")
        self._models: Any = None

    def __repr__(self) -> str:
        return "<DjangoBackend django-celery-results>"

    # -- plumbing -----------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the backend's ORM thread."""
        if not self._orm.started:
            await self.connect()
        return await self._orm.call(fn, *args)

    async def connect(self) -> None:
        """Start the ORM thread and check that Django and django-celery-results are set up."""
        if not self._orm.started:
            self._models = await self._orm.start(_load_models)

    async def close(self) -> None:
        """Close the ORM thread's database connection and stop the thread."""
        await self._orm.close()

    # -- documents ----------------------------------------------------------------

    def _fields(self, meta: Meta) -> dict[str, Any]:
        """The TaskResult columns of one document."""
        codec, get = self._codec, meta.get
        content_type, encoding, result = encode_text(codec, get("result"))
        extra = {k: v for k, v in meta.items() if k not in _COLUMNS and v is not None}
        extra["children"] = get("children") or []
        fields: dict[str, Any] = {
            "status": str(get("status")),
            "result": result,
            "content_type": content_type,
            "content_encoding": encoding,
            "traceback": get("traceback"),
            "meta": encode_text(codec, extra)[2],
            # result_extended's columns: the worker puts these keys in the document only then.
            "task_name": get("name"),
            "worker": get("worker"),
            "periodic_task_name": get("periodic_task_name"),
            "task_args": None if get("args") is None else encode_text(codec, get("args"))[2],
            "task_kwargs": None if get("kwargs") is None else encode_text(codec, get("kwargs"))[2],
        }
        return fields

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Write documents (later ones for the same id win), in one transaction."""
        if not items:
            return
        rows = [(tid, self._fields(meta)) for tid, meta in dict(items).items()]
        await self._call(self._write, rows)

    def _write(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        from django.db import transaction  # noqa: PLC0415
        from django.db.models.functions import Now  # noqa: PLC0415

        model = self._models.TaskResult
        with transaction.atomic(using=model._default_manager.db):
            for task_id, fields in rows:
                if fields["status"] == STARTED:
                    fields["date_started"] = Now()
                obj, created = model._default_manager.get_or_create(
                    task_id=task_id, defaults=fields
                )
                if not created:
                    for name, value in fields.items():
                        setattr(obj, name, value)
                    obj.save()

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Documents aligned with ``task_ids``; None for unknown ones."""
        if not task_ids:
            return []
        found = await self._call(self._read, list(dict.fromkeys(task_ids)))
        return [found.get(tid) for tid in task_ids]

    def _read(self, task_ids: list[str]) -> dict[str, Meta]:
        rows = self._models.TaskResult._default_manager.filter(task_id__in=task_ids)
        return {row.task_id: self._meta(row) for row in rows}

    def _meta(self, row: Any) -> Meta:
        """The document of a TaskResult, as celeriac or Celery wrote it."""

        def decode(text: str | None) -> Any:
            return decode_text(self._codec, row.content_type, row.content_encoding, text)

        extra = decode(row.meta) or {}
        meta: Meta = {
            "status": row.status,
            "result": decode(row.result),
            "traceback": row.traceback,
            "children": extra.pop("children", None) or [],
            "date_done": extra.pop("date_done", None)
            or (_date_text(row.date_done) if row.status in READY_STATES else None),
        }
        found = {
            "name": row.task_name,
            "worker": row.worker,
            "periodic_task_name": row.periodic_task_name,
            "args": decode(row.task_args),
            "kwargs": decode(row.task_kwargs),
        }
        meta.update((k, v) for k, v in found.items() if v is not None)
        meta.update(extra)
        meta["task_id"] = row.task_id
        return meta

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Poll until a ready document is stored (growing interval), or timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.01
        while True:
            doc = (await self.get([task_id]))[0]
            if doc is not None and doc.get("status") in READY_STATES:
                return doc
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return doc
            await asyncio.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, self._poll_cap)

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        if task_ids:
            manager = self._models.TaskResult._default_manager
            await self._call(lambda: manager.filter(task_id__in=list(task_ids)).delete())

    async def cleanup(self) -> int:
        """Delete task and group rows done more than ``result_expires`` ago; how many."""
        if self._expires is None:
            return 0
        return await self._call(self._delete_expired, self._expires)

    def _delete_expired(self, expires: float) -> int:
        from django.utils import timezone  # noqa: PLC0415

        cutoff = timezone.now() - dt.timedelta(seconds=expires)
        deleted = 0
        for model in (self._models.TaskResult, self._models.GroupResult):
            deleted += model._default_manager.filter(date_done__lt=cutoff).delete()[0]
        return deleted

    # -- groups -------------------------------------------------------------------

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember a group's member ids, as Celery's ``GroupResult.save()`` does."""
        value = [[group_id, None], [[[tid, None], None] for tid in task_ids]]
        content_type, encoding, text = encode_text(self._codec, value)
        fields = {"content_type": content_type, "content_encoding": encoding, "result": text}
        manager = self._models.GroupResult._default_manager
        await self._call(lambda: manager.update_or_create(group_id=group_id, defaults=fields))

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved group, or None."""
        manager = self._models.GroupResult._default_manager
        row = await self._call(lambda: manager.filter(group_id=group_id).first())
        if row is None:
            return None
        value = decode_text(self._codec, row.content_type, row.content_encoding, row.result)
        members = value[1] if isinstance(value, list | tuple) and len(value) == 2 else []
        return [str(member[0][0]) for member in members]

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        manager = self._models.GroupResult._default_manager
        await self._call(lambda: manager.filter(group_id=group_id).delete())

    # -- chords (not supported) -----------------------------------------------------

    async def set_chord_size(self, group_id: str, size: int) -> None:
        raise NotImplementedError(_CHORDS)

    async def add_to_chord(self, group_id: str, count: int) -> int:
        raise NotImplementedError(_CHORDS)

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        raise NotImplementedError(_CHORDS)


def _load_models() -> Any:
    """django-celery-results' models, once Django is set up; a clear error if it cannot be."""
    return load_app_models(
        "django_celery_results", "django-celery-results", "result_backend='django-db'"
    )
