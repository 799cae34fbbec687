"""The app objects projects reach for: connection(), pool, amqp, backend, Task, set_default."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection as KombuConnection

import celeriac
from celeriac import Celery, Task, current_app, current_task
from celeriac.app.connection import NoKombuChannels
from celeriac.routing import Queue


@pytest.fixture
def app() -> Celery:
    return Celery("objects", broker=f"memory://{uuid.uuid4().hex}", set_as_current=False)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://user:secret@broker.example:5673/vhost",
        "redis://:pass@127.0.0.1:6379/3",
    ],
)
def test_connection_describes_the_broker_as_kombu_does(url: str) -> None:
    ours = Celery("c", broker=url, set_as_current=False).connection()
    theirs = KombuConnection(url)
    assert ours.as_uri() == theirs.as_uri()
    assert ours.as_uri(include_password=True) == theirs.as_uri(include_password=True)
    assert (ours.hostname, ours.port, ours.userid) == (
        theirs.hostname,
        theirs.port,
        theirs.userid,
    )


def test_connection_connects_and_refuses_kombu_channels(app: Celery) -> None:
    with app.connection_for_write() as conn:
        assert conn.ensure_connection(max_retries=1) is conn and conn.connected
        with pytest.raises(NotImplementedError, match="apply_async"):
            conn.default_channel  # noqa: B018
        assert not hasattr(conn, "SimpleQueue")  # an AttributeError too
        with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
            conn.nonsense  # noqa: B018
    assert not conn.connected
    with app.pool.acquire(block=True) as pooled:
        assert pooled.connect().connected


def test_ensure_connection_gives_up_after_max_retries_calling_errback() -> None:
    app = Celery("down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    calls: list[float] = []
    with pytest.raises(ConnectionError):
        app.connection().ensure_connection(
            max_retries=1, interval_start=0, errback=lambda exc, delay: calls.append(delay)
        )
    assert calls == [0.0]


def test_backend_stores_reads_and_forgets(app: Celery) -> None:
    backend = app.backend
    backend.mark_as_failure("t1", ValueError("broken"))
    assert backend.get_state("t1") == "FAILURE"
    assert isinstance(backend.get_result("t1"), ValueError)
    backend.mark_as_done("t2", {"x": 1})
    assert backend.get_task_meta("t2")["result"] == {"x": 1}
    backend.forget("t2")
    assert backend.get_status("t2") == "PENDING"
    with pytest.raises(NoKombuChannels, match="get_task_meta"):
        backend.client  # noqa: B018


def test_amqp_lists_the_queues(app: Celery) -> None:
    assert list(app.amqp.queues) == ["celery"]
    app.conf.task_queues = [Queue("high"), Queue("low")]
    assert list(app.amqp.queues) == ["high", "low"]
    assert app.amqp.router is app.router
    with pytest.raises(NotImplementedError, match="send_task"):
        app.amqp.send_task_message  # noqa: B018
    with pytest.raises(NotImplementedError, match="send_task"):
        app.producer_pool  # noqa: B018


def test_set_default_makes_the_current_app(app: Celery) -> None:
    previous = current_app()
    try:
        app.set_default()
        assert current_app() is app
    finally:
        previous.set_current()


class Audited(Task):
    audited = True


def test_app_task_is_the_base_of_the_apps_tasks(app: Celery) -> None:
    class MyTask(app.Task):  # type: ignore[misc, name-defined]
        marker = "mine"

    @app.task(base=MyTask)
    def one() -> str:
        return str(current_task.name)

    @app.task
    def two() -> None: ...

    assert isinstance(one, MyTask) and isinstance(two, app.Task)
    assert one.app is app and MyTask().app is app
    assert one.apply().get() == one.name  # current_task is the running task
    assert not current_task  # and falsy outside one
    by_path = Celery("p", broker="memory://", task_cls=f"{__name__}:Audited", set_as_current=False)
    assert issubclass(by_path.Task, Audited)


def test_version_is_celeriacs_own() -> None:
    assert celeriac.VERSION[:3] == tuple(int(p) for p in celeriac.__version__.split(".")[:3])
    assert celeriac.VERSION_BANNER.startswith(celeriac.__version__)


def test_current_app_is_a_proxy_as_in_celery(app: Celery) -> None:
    previous = current_app()
    try:
        app.set_current()
        assert current_app.main == "objects" and current_app() is app
        assert isinstance(current_app, Celery)  # as isinstance(celery.current_app, Celery)
        with pytest.raises(TypeError, match="no arguments"):
            current_app("x")
    finally:
        previous.set_current()
