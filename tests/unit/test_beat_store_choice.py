"""Which schedule store an app's beats share: the setting, else the broker, else the backend."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celery
from celeriac.beat.stores import store_for_app, store_url_for_app
from celeriac.engines.memory.schedules import MemoryStore
from celeriac.engines.sqlite.schedules import SQLiteStore


def _app(**settings: Any) -> Celery:
    return Celery("proj", set_as_current=False, **settings)


def test_embedded_sqlite_broker_is_the_store() -> None:
    app = _app(broker="sqlite:///proj.db")
    assert store_url_for_app(app)[0] == "sqlite:///proj.db"
    store = store_for_app(app)
    assert isinstance(store, SQLiteStore) and store.namespace == "proj"


def test_redis_broker_with_its_key_prefix() -> None:
    app = _app(broker="redis://localhost:6379/3")
    app.conf.broker_transport_options = {"global_keyprefix": "p:"}
    app.conf.broker_use_ssl = {"ssl_cert_reqs": "required"}
    url, options = store_url_for_app(app)
    assert url == "redis://localhost:6379/3" and options["global_keyprefix"] == "p:"
    # the broker's options as its transport gets them: TLS and the reconnect policy
    assert options["ssl"] == {"ssl_cert_reqs": "required"}
    assert options["retry_deadline"] == 30.0


def test_amqp_broker_uses_the_redis_result_backend() -> None:
    app = _app(broker="amqp://guest:guest@localhost//", backend="redis://localhost:6379/0")
    url, options = store_url_for_app(app)
    assert url == "redis://localhost:6379/0" and options["retry_deadline"] == 30.0


def test_nothing_shared_falls_back_to_a_local_file(caplog: pytest.LogCaptureFixture) -> None:
    app = _app(broker="amqp://guest:guest@localhost//")
    assert store_url_for_app(app) == ("sqlite://", {})
    assert "set beat_schedule_store" in caplog.text


def test_setting_and_command_line_win() -> None:
    app = _app(broker="redis://localhost:6379/0", beat_schedule_store="memory://beats")
    assert store_url_for_app(app)[0] == "memory://beats"
    assert isinstance(store_for_app(app), MemoryStore)
    assert store_url_for_app(app, "celerybeat-schedule")[0] == "celerybeat-schedule"


def test_memory_broker_gives_a_memory_store() -> None:
    assert isinstance(store_for_app(_app(broker="memory://x")), MemoryStore)
