"""Beat's store choice with PostgreSQL: the setting, or derived from a db+postgresql backend.

Nothing connects here: stores and backends are only constructed.
"""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celery
from celeriac.backends import backend_from_url
from celeriac.beat.stores import store_for_app, store_url_for_app
from celeriac.engines.postgres.connection import channel_name, parse_sql_settings
from celeriac.engines.postgres.results import SQLBackend
from celeriac.engines.postgres.schedules import SQLStore
from celeriac.engines.sqlite.schedules import SQLiteStore
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import JSON

PG = "postgresql://u:secret@db.example:5432/proj"


def _app(**settings: Any) -> Celery:
    return Celery("proj", set_as_current=False, **settings)


def test_amqp_broker_with_postgresql_results_uses_the_sql_store() -> None:
    app = _app(broker="amqp://guest:guest@localhost//", backend=f"db+{PG}")
    url, options = store_url_for_app(app)
    # the result store's options: its reconnect policy and Celery's database settings
    assert url == PG and options["retry_deadline"] == 30.0
    assert options["database_engine_options"] == {}
    store = store_for_app(app)
    assert isinstance(store, SQLStore) and store.namespace == "proj" and store.url == PG


def test_database_settings_reach_the_store() -> None:
    app = _app(broker="amqp://localhost//", backend=f"db+{PG}")
    app.conf.result_backend_transport_options = {"schema": "results"}
    app.conf.database_engine_options = {"pool_size": 2}
    app.conf.database_table_schemas = {"beat": "beats", "task": "results"}
    url, options = store_url_for_app(app)
    assert url == PG and options["schema"] == "results"
    assert options["database_engine_options"] == {"pool_size": 2}
    settings = parse_sql_settings(url, options, role="beat")
    assert settings.schema == "beats" and settings.url.drivername == "postgresql+psycopg"
    assert dict(settings.engine_options) == {"pool_size": 2}
    assert parse_sql_settings(url, options, role="task").schema == "results"


@pytest.mark.parametrize(
    "setting", [PG, f"sqla+{PG}", f"db+{PG}", "postgres://u@h/d", "postgresql+psycopg://u@h/d"]
)
def test_beat_schedule_store_setting(setting: str) -> None:
    app = _app(broker="amqp://localhost//", beat_schedule_store=setting)
    app.conf.database_engine_options = {"echo": False}
    url, options = store_url_for_app(app)
    assert url == setting and options == {"database_engine_options": {"echo": False}}
    store = store_for_app(app)
    assert isinstance(store, SQLStore) and not store.url.startswith(("sqla+", "db+"))


def test_other_backends_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    app = _app(broker="amqp://localhost//", backend="db+sqlite:///results.db")
    assert store_url_for_app(app) == ("sqlite://", {})
    assert isinstance(store_for_app(app), SQLiteStore)


def test_url_forms_and_schema_query() -> None:
    settings = parse_sql_settings(f"db+{PG}?schema=s1&sslmode=disable")
    assert settings.schema == "s1" and dict(settings.url.query) == {"sslmode": "disable"}
    assert settings.libpq_url == "postgresql://u:secret@db.example:5432/proj?sslmode=disable"
    assert parse_sql_settings(PG, {"schema": "s2"}).schema == "s2"
    assert parse_sql_settings(PG).schema is None
    only_task = {"database_table_schemas": {"task": "t"}}
    assert parse_sql_settings(PG, only_task, role="beat").schema == "t"
    assert parse_sql_settings(f"{PG}?schema=q", only_task).schema == "q"
    with pytest.raises(ImproperlyConfigured, match="PostgreSQL"):
        parse_sql_settings("mysql+aiomysql://root@localhost/test")
    with pytest.raises(ImproperlyConfigured, match="mapping"):
        parse_sql_settings(PG, {"database_engine_options": "pool_size=2"})
    assert channel_name("c", None) == "c" and len(channel_name("c", "x" * 63)) < 64


def test_backend_schemes() -> None:
    for url in (f"db+{PG}", PG, "db+postgres://u@h/d", "db+postgresql+psycopg://u@h/d"):
        assert isinstance(backend_from_url(url, serializer=JSON, expires=None), SQLBackend)
