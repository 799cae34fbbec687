"""Settings that take effect in the client and in the result codec, compared with Celery
where Celery's behaviour can be observed without a server."""

from __future__ import annotations

import sys
import types
import uuid
from typing import Any

import pytest

from celeriac import Celery, Queue
from celeriac.annotations import prepare_annotations, resolve
from celeriac.engines.options import backend_options, broker_options, publisher_options
from celeriac.engines.redis.connection import parse_redis_url
from celeriac.exceptions import ContentDisallowed, QueueNotFound
from celeriac.protocol.result_codec import COMPRESSED_MARKER, result_codec
from celeriac.protocol.serializers import JSON

celery = pytest.importorskip("celery")
celery_annotations = pytest.importorskip("celery.app.annotations")
celery_backends = pytest.importorskip("celery.backends.base")


def _app(**settings: Any) -> Celery:
    name = uuid.uuid4().hex
    settings.setdefault("broker", f"memory://{name}")
    settings.setdefault("backend", f"memory://{name}")
    return Celery("fx", set_as_current=False, **settings)


# -- task_annotations ------------------------------------------------------------------


class RateAnnotation:
    """An annotation object, as Celery users write them (also imported by path below)."""

    def annotate(self, task: Any) -> dict[str, Any] | None:
        return {"rate_limit": "5/s"} if task.name.endswith("mul") else None


def test_annotations_by_name_star_object_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("celeriac_test_annotations")
    module.RateAnnotation = RateAnnotation  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "celeriac_test_annotations", module)
    failures: list[tuple[Any, str]] = []

    def on_failure(self: Any, exc: BaseException, task_id: str, *_: Any) -> None:
        failures.append((self, str(exc)))

    app = _app(
        task_annotations=[
            {"fx.add": {"rate_limit": "10/s", "max_retries": 7}, "*": {"on_failure": on_failure}},
            "celeriac_test_annotations.RateAnnotation",
        ]
    )

    @app.task(name="fx.add", rate_limit="1/s")
    def add(x: int, y: int) -> int:
        return x + y

    app.finalize()

    @app.task(name="fx.mul")  # registered after the app was finalized: annotated at once
    def mul(x: int, y: int) -> int:
        return x * y

    assert (add.rate_limit, add.max_retries) == ("10/s", 7)  # the setting wins, as in Celery
    assert mul.rate_limit == "5/s" and mul.max_retries == 3
    add.on_failure(ValueError("boom"), "id", (), {}, None)
    assert failures == [(add, "boom")]  # a function becomes a method of the task


def test_star_is_applied_after_the_task_own_entry_as_in_celery() -> None:
    setting = {"t": {"rate_limit": "1/s"}, "*": {"rate_limit": "2/s"}}
    task = types.SimpleNamespace(name="t")
    ours = [dict(m) for m in resolve(prepare_annotations(setting), task)]
    peer = celery_annotations
    theirs = list(peer.resolve_all(peer.prepare(setting), task))
    assert ours == theirs == [{"rate_limit": "1/s"}, {"rate_limit": "2/s"}]


def test_at_keys_wrap_a_method_of_that_task_only() -> None:
    def doubled(run: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            return 2 * run(self, *args, **kwargs)

        return wrapper

    app = _app(task_annotations={"fx.one": {"@run": doubled, "@__call__": doubled}})

    @app.task(name="fx.one")
    def one() -> int:
        return 1

    @app.task(name="fx.other")
    def other() -> int:
        return 1

    app.finalize()
    assert one.run() == 2 and one() == 4  # __call__ wraps the (wrapped) run
    assert other.run() == 1 and other() == 1
    assert one.apply().get() == 4  # a run goes through an overridden __call__, as in Celery


def test_annotations_apply_before_the_first_publish() -> None:
    app = _app(task_annotations={"fx.routed": {"queue": "annotated"}})

    @app.task(name="fx.routed")
    def routed() -> None:
        pass

    request = app.build_request("fx.routed", (), {}, {}, routed)
    assert request.route.queue is not None and request.route.queue.name == "annotated"


# -- task_create_missing_queues ----------------------------------------------------------


def test_missing_queues_raise_like_celery_when_not_created() -> None:
    app = _app(task_create_missing_queues=False)

    @app.task
    def noop() -> None:
        pass

    assert app.build_request(noop.name, (), {}, {}, noop).route.routing_key == "celery"
    with pytest.raises(QueueNotFound) as ours:
        noop.apply_async(queue="nope")
    peer = celery.Celery("peer", broker="memory://", set_as_current=False)
    peer.conf.task_create_missing_queues = False

    @peer.task
    def peer_noop() -> None:
        pass

    with pytest.raises(celery.exceptions.QueueNotFound) as theirs:
        peer_noop.apply_async(queue="nope")
    assert str(ours.value) == str(theirs.value) and isinstance(ours.value, KeyError)
    app.conf.task_queues = [Queue("listed")]
    assert app.build_request(noop.name, (), {}, {"queue": "listed"}, noop).route.queue
    with pytest.raises(QueueNotFound, match="'celery' missing"):
        app.build_request(noop.name, (), {}, {}, noop)  # the default queue is not listed
    with pytest.raises(QueueNotFound):
        app.router.consume_specs(["other"])


# -- task_default_delivery_mode -------------------------------------------------------------


def test_delivery_mode_from_the_setting_or_the_call() -> None:
    app = _app()

    @app.task
    def noop() -> None:
        pass

    assert app.build_request(noop.name, (), {}, {}, noop).delivery_mode == 2
    app.conf.task_default_delivery_mode = "transient"
    assert app.build_request(noop.name, (), {}, {}, noop).delivery_mode == 1
    call = app.build_request(noop.name, (), {}, {"delivery_mode": "persistent"}, noop)
    assert call.delivery_mode == 2
    assert (
        app._outgoing([app.build_request(noop.name, (), {}, {}, noop)])[0].envelope.properties[
            "delivery_mode"
        ]
        == 1
    )
    app.conf.task_default_delivery_mode = "sometimes"
    with pytest.raises(ValueError, match="'persistent' \\(2\\) or 'transient' \\(1\\)"):
        app.build_request(noop.name, (), {}, {}, noop)


# -- task_store_eager_result ------------------------------------------------------------------


def test_eager_results_are_stored_when_asked() -> None:
    app = _app(task_store_eager_result=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(ignore_result=True)
    def ignored() -> int:
        return 1

    result = add.apply((2, 3))
    assert app.AsyncResult(result.id).get(timeout=5) == 5
    assert app.AsyncResult(ignored.apply().id).state == "PENDING"
    app.conf.task_store_eager_result = False
    assert app.AsyncResult(add.apply((1, 1)).id).state == "PENDING"
    app.close()


# -- result_compression and result_accept_content -------------------------------------------


def test_compressed_results_read_both_ways_with_celery() -> None:
    base = celery_backends
    codec = result_codec({"result_serializer": "json", "result_compression": "gzip"})
    ours = codec.dumps({"big": "x" * 1000})
    assert ours.startswith(COMPRESSED_MARKER) and len(ours) < 200
    assert base.decompress_payload(ours) == JSON.dumps({"big": "x" * 1000})
    theirs = base.compress_payload(b'{"from": "celery"}', "bzip2")
    plain = result_codec({"result_serializer": "json"})
    assert plain.loads(theirs) == {"from": "celery"} and plain.loads(b'"x"') == "x"
    assert plain.dumps("x") == b'"x"'


def test_result_accept_content_refuses_other_serializers() -> None:
    conf = {"result_serializer": "pickle", "accept_content": ["json"]}
    codec = result_codec(conf)
    blob = codec.dumps({"a": 1})
    with pytest.raises(ContentDisallowed, match="result_accept_content"):
        codec.loads(blob)
    assert result_codec({**conf, "result_accept_content": ["pickle"]}).loads(blob) == {"a": 1}


def test_backends_without_compression_say_so(caplog: pytest.LogCaptureFixture) -> None:
    app = _app(result_compression="gzip")
    assert app.result_codec("memory://x").compress_with == "application/x-gzip"
    assert app.result_codec("db+postgresql://h/d").compress_with is None
    assert "result_compression='gzip' has no effect" in caplog.text


# -- settings that tune engines ----------------------------------------------------------------


def test_redis_result_settings_reach_the_connection() -> None:
    app = _app(
        redis_socket_timeout=7.5,
        redis_socket_connect_timeout=None,
        redis_socket_keepalive=False,
        redis_max_connections=None,
        redis_backend_use_ssl={"ssl_cert_reqs": "none"},
        result_backend_transport_options={"max_connections": 4},
    )
    options = backend_options(app.conf, "redis://localhost/1", app.broker_url)
    settings = parse_redis_url("redis://localhost/1", options)
    connection = settings.connection
    assert (connection["socket_timeout"], connection["socket_connect_timeout"]) == (7.5, None)
    assert connection["socket_keepalive"] is False and settings.tls
    assert settings.max_connections == 4  # the transport options win
    default = parse_redis_url("redis://h/1", backend_options(_app().conf, "redis://h/1", ""))
    assert default.connection["socket_timeout"] == 30.0 and not default.tls
    assert default.max_connections == 20


def test_broker_settings_reach_the_engines() -> None:
    app = _app(broker_use_ssl={"ca_certs": "/ca.pem"}, broker_heartbeat=30, broker_pool_limit=3)
    amqp = broker_options(app.conf, "amqp://h//")
    assert amqp["ssl"] == {"ca_certs": "/ca.pem"} and amqp["heartbeat"] == 30
    publisher = parse_redis_url("redis://h/0", publisher_options(app.conf, "redis://h/0"))
    assert publisher.max_connections == 3 and publisher.tls
    app.conf.update(broker_pool_limit=None, broker_pool_acquire_timeout=1.5)
    unlimited = parse_redis_url("redis://h/0", publisher_options(app.conf, "redis://h/0"))
    assert unlimited.max_connections > 10**6 and unlimited.pool_timeout == 1.5
    rpc = backend_options(_app(result_persistent=True).conf, "rpc://", "amqp://h//")
    assert rpc["persistent"] is True and rpc["broker_url"] == "amqp://h//"


def test_database_result_backend_setting() -> None:
    app = _app(backend="database", database_url="postgresql://u@h/d")
    assert app.result_backend_url == "db+postgresql://u@h/d"
    options = backend_options(
        _app(database_table_names={"task": "t"}).conf, "db+postgresql://h/d", ""
    )
    assert options["database_table_names"] == {"task": "t"}
    assert options["database_create_tables_at_setup"] is True
