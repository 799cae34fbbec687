"""DjangoBackend (``result_backend = "django-db"``): the backend contract on django-celery-results'
tables in PostgreSQL, with Django configured in this process (a schema of the module's own,
django-celery-results' migrations applied to it).

Chords are refused by this backend (see :mod:`celeriac.engines.django.results`), and its rows
carry no expiry of their own (django-celery-results' tables have no such column): those
contract tests are replaced by the ones below, which check what the backend does instead.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from celeriac import states
from celeriac.backends.base import ResultBackend
from celeriac.protocol.serializers import JSON
from celeriac.testing.contract.backend import BackendContract, BackendFactory, make_meta
from tests.services import POSTGRES_URL, unavailable

pytest.importorskip("django_celery_results", reason="a test dependency (make install)")

from celeriac.engines.django.results import DjangoBackend

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", autouse=True)
def django_schema() -> Iterator[str]:
    """Django configured on a fresh schema holding django-celery-results' tables."""
    from django.conf import settings  # noqa: PLC0415

    if settings.configured:
        pytest.skip("Django's settings were configured by another test in this process")
    schema = f"celeriac_djb_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    info = psycopg.conninfo.conninfo_to_dict(POSTGRES_URL)
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            _configure(info, schema)
            yield schema
        finally:
            from django.db import connections  # noqa: PLC0415

            connections.close_all()
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def _configure(info: dict[str, Any], schema: str) -> None:
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django_celery_results"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": info.get("dbname", "test"),
                "USER": info.get("user", "postgres"),
                "PASSWORD": info.get("password", ""),
                "HOST": info.get("host", "127.0.0.1"),
                "PORT": str(info.get("port", "5432")),
                "OPTIONS": {"options": f"-c search_path={schema}"},
            }
        },
    )
    django.setup()
    call_command("migrate", "django_celery_results", verbosity=0)


@pytest.fixture
async def make_backend() -> AsyncIterator[BackendFactory]:
    made: list[DjangoBackend] = []

    async def make(*, expires: float | None, **options: Any) -> ResultBackend:
        backend = DjangoBackend("django-db", serializer=JSON, expires=expires, options=options)
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def backend(make_backend: BackendFactory) -> ResultBackend:
    return await make_backend(expires=3600)


_NO_CHORDS = "django-db refuses chords: test_chords_are_refused checks that instead"
_NO_EXPIRY = "django-db rows have no expiry column: test_cleanup_deletes_by_date_done instead"


class TestDjangoBackendContract(BackendContract):
    """The shared contract, but for chords and per-row expiry (see the module docstring)."""

    for _name in dir(BackendContract):
        if _name.startswith("test_") and ("chord" in _name):
            locals()[_name] = pytest.mark.skip(reason=_NO_CHORDS)(getattr(BackendContract, _name))
    test_expiry = pytest.mark.skip(reason=_NO_EXPIRY)(BackendContract.test_expiry)
    del _name


async def test_chords_are_refused(backend: ResultBackend) -> None:
    assert backend.supports_chords is False
    with pytest.raises(NotImplementedError, match="chords"):
        await backend.set_chord_size(str(uuid.uuid4()), 2)


async def test_cleanup_deletes_by_date_done(make_backend: BackendFactory) -> None:
    """Rows done more than result_expires ago go, as django-celery-results' cleanup does."""
    from django_celery_results.models import GroupResult, TaskResult  # noqa: PLC0415

    short = await make_backend(expires=60)
    old, fresh, gid = (str(uuid.uuid4()) for _ in range(3))
    await short.store([(old, make_meta(old)), (fresh, make_meta(fresh))])
    await short.save_group(gid, [old])
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)

    def backdate() -> None:  # update() leaves auto_now alone
        TaskResult.objects.filter(task_id=old).update(date_done=past)
        GroupResult.objects.filter(group_id=gid).update(date_done=past)

    import asyncio  # noqa: PLC0415

    await asyncio.to_thread(backdate)
    assert await short.cleanup() >= 2
    got = await short.get([old, fresh])
    assert got[0] is None and got[1] is not None
    assert await short.restore_group(gid) is None


async def test_rows_are_what_django_celery_results_reads(backend: ResultBackend) -> None:
    """The model's fields, as django-celery-results' own backend would have written them."""
    import asyncio  # noqa: PLC0415

    from django_celery_results.models import TaskResult  # noqa: PLC0415

    tid, parent = str(uuid.uuid4()), str(uuid.uuid4())
    meta = make_meta(tid, states.SUCCESS, {"x": [1, 2]}, parent_id=parent, name="t.add")
    meta.update(args=[1, 2], kwargs={"k": 1}, worker="w@h")
    await backend.store([(tid, meta)])
    row = await asyncio.to_thread(TaskResult.objects.get, task_id=tid)
    assert (row.status, row.content_type, row.content_encoding) == (
        "SUCCESS", "application/json", "utf-8",
    )  # fmt: skip
    assert JSON.loads(row.result.encode()) == {"x": [1, 2]}
    assert JSON.loads(row.meta.encode()) == {
        "children": [],
        "parent_id": parent,
        "date_done": meta["date_done"],
    }
    assert (row.task_name, row.worker) == ("t.add", "w@h")
    assert JSON.loads(row.task_args.encode()) == [1, 2]
    assert row.date_done is not None and row.date_started is None
    again = (await backend.get([tid]))[0]
    assert again is not None and again["parent_id"] == parent and again["args"] == [1, 2]
