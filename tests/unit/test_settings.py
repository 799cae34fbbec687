"""``app.conf`` as Celery's: every way of setting a value, Celery 3's names, and nothing
accepted in silence (unknown names and unsupported settings are reported)."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import types
from collections.abc import Iterator

import pytest

from celeriac import Celery
from celeriac.conf import Settings, checks
from celeriac.conf.report import bug_report, censor, mask_url
from celeriac.exceptions import ImproperlyConfigured

celery = pytest.importorskip("celery")


@pytest.fixture
def warnings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[pytest.LogCaptureFixture]:
    """The settings warnings logged during the test (each once per process: reset here)."""
    monkeypatch.setattr(checks, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="celeriac.conf"):
        yield caplog


@pytest.fixture
def settings_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """An importable settings module, ``celeriac_test_conf``, with an object inside."""
    module = types.ModuleType("celeriac_test_conf")
    module.broker_url = "memory://module"  # type: ignore[attr-defined]
    module.CELERYD_CONCURRENCY = 3  # type: ignore[attr-defined]
    module.timedelta = dt.timedelta  # type: ignore[attr-defined]  # imported names are not settings
    module.os = sys  # type: ignore[attr-defined]
    module.settings = types.SimpleNamespace(  # type: ignore[attr-defined]
        CELERY_BROKER_URL="memory://django", CELERY_TASK_ACKS_LATE=False, SECRET_KEY="x"
    )
    monkeypatch.setitem(sys.modules, "celeriac_test_conf", module)
    return module


def _app(**settings: object) -> Celery:
    return Celery("t", set_as_current=False, **settings)


def test_celery_defaults_are_readable() -> None:
    conf = _app().conf
    assert conf.broker_pool_limit == 10
    assert conf.result_expires == dt.timedelta(days=1)
    assert conf.worker_lost_wait == 10.0
    assert conf["task_default_delivery_mode"] == 2
    assert conf.get("redis_backend_use_ssl") is None


def test_every_way_of_setting_a_value(settings_module: types.ModuleType) -> None:
    app = _app(broker_pool_limit=1)
    assert app.conf.broker_pool_limit == 1
    app.conf.broker_pool_limit = 2
    assert app.conf["broker_pool_limit"] == 2
    app.conf["broker_pool_limit"] = 3
    app.conf.update(broker_pool_limit=4)
    assert app.conf.broker_pool_limit == 4
    app.conf.update({"BROKER_POOL_LIMIT": 5})
    assert app.conf.broker_pool_limit == 5 and app.conf.BROKER_POOL_LIMIT == 5

    class Config:
        broker_pool_limit = 6
        CELERY_ALWAYS_EAGER = True

    app.config_from_object(Config)
    assert (app.conf.broker_pool_limit, app.conf.task_always_eager) == (6, True)
    app.config_from_object({"CELERYD_MAX_MEMORY_PER_CHILD": 1000, "CELERYBEAT_SCHEDULER": "x:Y"})
    assert app.conf.worker_max_memory_per_child == 1000 and app.conf.beat_scheduler == "x:Y"
    app.config_from_object("celeriac_test_conf")
    assert app.broker_url == "memory://module" and app.conf.worker_concurrency == 3
    assert "timedelta" not in app.conf and "os" not in app.conf
    app.config_from_object("celeriac_test_conf:settings", namespace="CELERY")
    assert app.broker_url == "memory://django" and app.conf.task_acks_late is False
    assert "secret_key" not in app.conf
    app.config_from_object("celeriac_test_conf.settings", namespace="CELERY")
    assert app.broker_url == "memory://django"
    with pytest.raises(ImproperlyConfigured, match="no_such_module"):
        app.config_from_object("no_such_module")
    app.config_from_object("no_such_module", silent=True)


def test_celery_3_names_read_and_write_the_same_entry() -> None:
    conf = Settings()
    conf.CELERY_ALWAYS_EAGER = True
    assert conf.task_always_eager is True and conf["CELERY_ALWAYS_EAGER"] is True
    assert "CELERY_ALWAYS_EAGER" in conf and conf.is_set("task_always_eager")
    del conf["CELERY_ALWAYS_EAGER"]
    assert conf.task_always_eager is False and not conf.is_set("task_always_eager")


def test_celery_conf_helpers() -> None:
    conf = _app(result_extended=True, broker_url="redis://:s3cret@host//").conf
    assert conf.find_value_for_key("extended", "result") is True
    assert conf.get_by_parts("worker", "disable_rate_limits") is False
    assert conf.first("task_default_exchange", "task_default_queue") == "celery"
    assert conf.table()["broker_url"] == "redis://:********@host//"
    assert "s3cret" not in conf.humanize() and "result_extended: True" in conf.humanize()
    assert len(conf.table(with_defaults=True)) >= 211


def test_unknown_names_are_kept_and_named_with_the_closest(
    warnings: pytest.LogCaptureFixture,
) -> None:
    app = _app(my_custom_thing=1, worker_concurency=2)
    assert app.conf.my_custom_thing == 1 and app.conf.worker_concurency == 2
    app.conf.update(task_acks_lte=True)
    app.conf.task_acks_lte = False  # the same typo again: reported once
    app.config_from_object({"CELERY_ALWAYS_EAGR": True, "DEBUG": True})
    joined = "\n".join(warnings.messages)
    assert "'worker_concurency'" in joined and "did you mean worker_concurrency" in joined
    assert "'task_acks_lte'" in joined and "task_acks_late" in joined
    assert "'CELERY_ALWAYS_EAGR'" in joined and "CELERY_ALWAYS_EAGER" in joined
    assert "'my_custom_thing'" in joined and "DEBUG" not in joined
    assert joined.count("task_acks_lte") == 1


def test_celery_accepts_the_same_unknown_names() -> None:
    peer = celery.Celery("t", my_custom_thing=1, set_as_current=False)
    assert peer.conf.my_custom_thing == 1  # so celeriac must not raise either


def test_unsupported_settings_warn_once_at_start(warnings: pytest.LogCaptureFixture) -> None:
    app = _app(
        broker="memory://unsupported",
        backend="memory://unsupported",
        worker_lost_wait=3,
        task_remote_tracebacks=False,  # its default: nothing to say
    )

    @app.task
    def noop() -> None:
        pass

    noop.delay()
    noop.delay()
    app.finalize()
    found = [m for m in warnings.messages if "has no effect" in m]
    assert len(found) == 1 and "worker_lost_wait=3" in found[0] and "pipe" in found[0]
    app.close()


def test_task_protocol_1_is_refused_at_start() -> None:
    app = _app(broker="memory://protocol", task_protocol=1)

    @app.task
    def noop() -> None:
        pass

    with pytest.raises(ImproperlyConfigured, match="task_protocol=1"):
        noop.delay()
    with pytest.raises(ImproperlyConfigured, match="protocol 2"):
        app.finalize()


def test_report_masks_secrets_and_lists_unsupported_settings() -> None:
    app = _app(
        broker="redis://user:hunter2@localhost:6379/0",
        backend="db+postgresql://app:hunter2@db/app",
        security_key="/etc/key.pem",
        worker_agent="proj.agent:Agent",
        broker_transport_options={"password": "hunter2", "visibility_timeout": 10},
    )
    text = bug_report(app)
    assert "hunter2" not in text
    assert "transport:redis://user:********@localhost:6379/0" in text
    assert "results:db+postgresql://app:********@db/app" in text
    assert "'visibility_timeout': 10" in text and "security_key: '********'" in text
    assert "worker_agent: no monitoring agent is started" in text
    assert text.startswith("software -> celeriac:")


def test_masking_rules() -> None:
    assert mask_url("sentinel://:pw@h1:26379;sentinel://:pw@h2:26379") == (
        "sentinel://:********@h1:26379;sentinel://:********@h2:26379"
    )
    assert mask_url("redis://localhost/0") == "redis://localhost/0"
    assert censor({"nested": {"api_token": "t", "n": 1}}) == {
        "nested": {"api_token": "********", "n": 1}
    }
