"""App construction and settings under Celery's names."""

from __future__ import annotations

import types

import pytest

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured


def test_defaults_and_celery_differences() -> None:
    app = Celery("t", set_as_current=False)
    assert app.broker_url == "sqlite://"  # embedded store when nothing is configured
    assert app.result_backend_url == "sqlite://"  # results in the broker's store
    assert app.conf.task_acks_late is True  # Celery: False
    assert app.conf.task_track_started is True  # Celery: False
    assert app.conf["accept_content"] == ("json",)  # Celery's default, as Celery writes it


def test_constructor_arguments_and_update() -> None:
    app = Celery("t", broker="memory://x", backend="memory://y", set_as_current=False)
    app.conf.update(task_serializer="msgpack", result_expires=10)
    app.conf.task_default_queue = "jobs"
    assert (app.broker_url, app.result_backend_url) == ("memory://x", "memory://y")
    assert app.conf["task_serializer"] == "msgpack"
    assert app.conf.result_expires == 10
    assert app.router.default_queue_spec().name == "jobs"


def test_unknown_constructor_setting_is_kept_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="celeriac.conf"):
        app = Celery("t", brokr_url="memory://", set_as_current=False)
    assert app.conf.brokr_url == "memory://"  # kept, as Celery keeps it
    assert "did you mean broker_url" in caplog.text


def test_django_style_namespace() -> None:
    settings = types.SimpleNamespace(
        CELERY_BROKER_URL="memory://d", CELERY_TASK_ACKS_LATE=False, DEBUG=True
    )
    app = Celery("t", set_as_current=False)
    app.config_from_object(settings, namespace="CELERY")
    assert app.broker_url == "memory://d"
    assert app.conf.task_acks_late is False
    assert "debug" not in app.conf


def test_old_uppercase_names() -> None:
    app = Celery("t", set_as_current=False)
    app.config_from_object(
        {"BROKER_URL": "memory://old", "CELERY_ALWAYS_EAGER": True, "CELERYD_CONCURRENCY": 3}
    )
    assert app.broker_url == "memory://old"
    assert app.conf.task_always_eager is True
    assert app.conf.worker_concurrency == 3


def test_environment_provides_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://env")
    app = Celery("t", set_as_current=False)
    assert app.broker_url == "memory://env"
    monkeypatch.setenv("CELERIAC_BROKER_URL", "memory://ours")
    assert app.broker_url == "memory://ours"
    app.conf.broker_url = "memory://explicit"
    assert app.broker_url == "memory://explicit"


def test_config_from_envvar(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    module = types.ModuleType("celeriac_test_settings")
    module.broker_url = "memory://from-module"  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "celeriac_test_settings", module)
    monkeypatch.setenv("MY_SETTINGS", "celeriac_test_settings")
    app = Celery("t", set_as_current=False)
    app.config_from_envvar("MY_SETTINGS")
    assert app.broker_url == "memory://from-module"
    with pytest.raises(ImproperlyConfigured, match="UNSET_VAR"):
        app.config_from_envvar("UNSET_VAR")


def test_on_after_configure_fires_once() -> None:
    app = Celery("t", set_as_current=False)
    seen = []

    @app.on_after_configure.connect
    def setup(sender: Celery, **kwargs: object) -> None:
        seen.append(sender)

    app.finalize()
    app.finalize()
    assert seen == [app]
