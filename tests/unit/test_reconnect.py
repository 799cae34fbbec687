"""The reconnect policy from Celery's settings, OperationalError, and publish retries."""

from __future__ import annotations

import itertools
import logging
import pickle
import socket
import time

import pytest
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.functional import fxrange

from celeriac import Celery
from celeriac.engines.amqp.connection import AMQPOptions
from celeriac.engines.options import backend_options, broker_options
from celeriac.engines.redis.broker import RedisTransport
from celeriac.exceptions import CeleriacError, ImproperlyConfigured, OperationalError
from celeriac.reconnect import LEASE, Outage, publish_policy
from celeriac.retry import RetryPolicy


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_operational_error_is_builtin_kombu_and_ours() -> None:
    exc = OperationalError("redis at redis://u:**@h failed")
    assert isinstance(exc, ConnectionError)
    assert isinstance(exc, KombuOperationalError)
    assert isinstance(exc, CeleriacError)
    with pytest.raises(KombuOperationalError):
        raise OperationalError("caught by Celery code")
    again = pickle.loads(pickle.dumps(exc))
    assert isinstance(again, OperationalError) and again.args == exc.args


def test_default_broker_policy_rides_out_an_outage_shorter_than_the_lease() -> None:
    options = broker_options(Celery("t").conf, "redis://localhost")
    policy = RetryPolicy.from_options(options)
    assert policy.deadline == LEASE
    waits = list(itertools.islice(policy.delays(), 200))
    assert sum(waits) >= LEASE  # attempts do not run out before the deadline
    assert max(waits) <= 1.0  # back within a second of the server


def test_the_lease_bounds_the_retries() -> None:
    conf = Celery("t", broker_transport_options={"lease_timeout": 12}).conf
    assert RetryPolicy.from_options(broker_options(conf, "redis://h")).deadline == 12


def test_broker_connection_settings() -> None:
    app = Celery("t")
    app.conf.broker_connection_retry = False
    off = broker_options(app.conf, "redis://h")
    assert RetryPolicy.from_options(off).max_retries == 0
    assert RetryPolicy.from_options(off, prefix="connect_").max_retries == 0
    app.conf.broker_connection_retry = True
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 5
    options = broker_options(app.conf, "redis://h")
    assert RetryPolicy.from_options(options).max_retries == 5
    assert RetryPolicy.from_options(options, prefix="connect_").max_retries == 0
    app.conf.broker_connection_max_retries = 0  # as Celery: 0 retries for ever
    assert RetryPolicy.from_options(broker_options(app.conf, "redis://h")).max_retries is None
    app.conf.broker_connection_timeout = 1.5
    assert broker_options(app.conf, "redis://h")["socket_connect_timeout"] == 1.5
    # The transport options win over the settings.
    app.conf.broker_transport_options = {"max_retries": 2}
    options = broker_options(app.conf, "redis://h")
    assert RetryPolicy.from_options(options).max_retries == 2
    # as kombu's: the transport option bounds the connection attempts too
    assert RetryPolicy.from_options(options, prefix="connect_").max_retries == 2


def test_redis_transport_takes_the_startup_policy() -> None:
    app = Celery("t", broker="redis://h")
    app.conf.broker_connection_retry_on_startup = False
    transport = RedisTransport("redis://h", options=broker_options(app.conf, "redis://h"))
    assert transport.connect_retry.max_retries == 0
    assert transport.retry.deadline == LEASE


def test_result_backend_retry_settings() -> None:
    app = Celery("t")
    default = RetryPolicy.from_options(backend_options(app.conf, "redis://h", "redis://h"))
    assert (default.max_retries, default.deadline) == (None, LEASE)
    app.conf.result_backend_always_retry = True
    app.conf.result_backend_max_retries = 4
    always = RetryPolicy.from_options(backend_options(app.conf, "redis://h", "redis://h"))
    assert (always.max_retries, always.deadline) == (4, None)


def test_publish_policy_waits_as_kombu_does() -> None:
    conf = Celery("t").conf
    celery_policy = {"max_retries": 5, "interval_start": 0.1, "interval_step": 0.3}
    celery_policy["interval_max"] = 0.8
    policy = publish_policy(conf, None, celery_policy)
    assert policy is not None
    # kombu.utils.functional.retry_over_time's waits, as it computes them
    kombu_waits = [min(w, 0.8) for w in itertools.islice(fxrange(0.1, 0.9, 0.3, True), 5)]
    assert list(policy.delays()) == pytest.approx(kombu_waits)
    default = publish_policy(conf)  # Celery's default policy
    assert default is not None
    waits = [min(w, 1.0) for w in itertools.islice(fxrange(0, 1, 0.2, True), 3)]
    assert list(default.delays()) == pytest.approx(waits)
    assert publish_policy(conf, False) is None
    conf.task_publish_retry = False
    assert publish_policy(conf) is None
    assert publish_policy(conf, True) is not None  # apply_async(retry=True) wins
    assert publish_policy(conf, True, {"max_retries": None}).max_retries is None  # type: ignore[union-attr]


@pytest.mark.timeout(30)
def test_delay_to_an_unreachable_broker_raises_operational_error_with_the_password_masked() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{_free_port()}/0"
    app = Celery("t", broker=url)
    app.conf.broker_transport_options = {"retry_deadline": 0.3, "connect_retry_deadline": 0.3}
    app.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0.05}

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    try:
        started = time.monotonic()
        with pytest.raises(OperationalError) as caught:
            add.delay(1, 2)
        assert "s3cret" not in str(caught.value)
        assert "127.0.0.1" in str(caught.value)
        assert time.monotonic() - started < 20
        with pytest.raises(OperationalError):
            add.apply_async((1, 2), retry=False)
    finally:
        app.close()


def test_rabbitmq_options_take_the_policy() -> None:
    app = Celery("t")
    url = "amqp://guest:guest@h//"
    options = AMQPOptions.from_options(broker_options(app.conf, url))
    assert options.retry.deadline == LEASE and options.retry.max_retries == 100
    assert options.connect_retry.max_retries == 100 and options.connect_retry.deadline is None
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 0  # no limit
    options = AMQPOptions.from_options(broker_options(app.conf, url))
    assert options.connect_retry.max_retries == 0
    assert options.retry.max_retries is None
    assert options.connect_timeout == 4  # broker_connection_timeout


def test_bad_retry_settings_are_named() -> None:
    app = Celery("t")
    app.conf.broker_connection_max_retries = "many"
    with pytest.raises(ImproperlyConfigured, match="broker_connection_max_retries"):
        broker_options(app.conf, "redis://h")
    with pytest.raises(ImproperlyConfigured, match="interval_max"):
        publish_policy(Celery("t").conf, True, {"interval_max": "soon"})
    with pytest.raises(TypeError, match="retry_policy must be a mapping"):
        publish_policy(Celery("t").conf, True, [1, 2])  # type: ignore[arg-type]


def test_an_outage_is_logged_once_then_its_end(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    outage = Outage(
        logging.getLogger("t.outage"), "store redis://:**@h", deadline=10, clock=lambda: now[0]
    )
    assert outage.ok() is None and not outage.down
    with caplog.at_level(logging.WARNING, "t.outage"):
        for _ in range(5):
            outage.failed(ConnectionError("redis://:s3cret@h refused"))
            now[0] += 1
        assert outage.down
        assert caplog.text.count("unreachable, retrying") == 1
        assert "ERROR" not in caplog.text
        now[0] += 10
        outage.failed(ConnectionError("refused"))
        outage.failed(ConnectionError("refused"))
        assert caplog.text.count("still unreachable after 15 s") == 1
        assert outage.ok() == 15
        assert caplog.text.count("back after 15.0 s") == 1
        assert outage.ok() is None and not outage.down
    assert "s3cret" not in caplog.text
