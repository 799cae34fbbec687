"""The pytest plugin that installing celeriac registers (``celeriac.testing.pytest``).

Each test runs a generated test suite with pytester, in this process (the entry point is
loaded as in any session) or, where Celery's plugin joins in, in a subprocess.
"""

from __future__ import annotations

import time

import pytest

from celeriac import clock

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _ini(pytester: pytest.Pytester) -> None:
    """The generated suites' settings (pytest-asyncio asks for its loop scope)."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


CELERY_STYLE = """
import pytest

from celeriac.contrib.testing.worker import start_worker


@pytest.fixture(scope="session")
def celery_config():
    return {"task_default_queue": "tests"}


def test_a_task_defined_in_the_test_runs(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16


def test_failures_propagate(celery_app, celery_worker):
    @celery_app.task
    def boom():
        raise KeyError("missing")

    with pytest.raises(KeyError):
        boom.delay().get(timeout=10)


@pytest.mark.celery(result_expires=123)
def test_the_marker_overrides_the_config(celery_app):
    assert celery_app.conf.result_expires == 123
    assert celery_app.conf.task_default_queue == "tests"


def test_start_worker(celery_app):
    @celery_app.task
    def add(x, y):
        return x + y

    with start_worker(celery_app) as worker:
        assert worker.app is celery_app
        assert add.delay(1, 2).get(timeout=10) == 3


def test_the_session_worker(celery_session_app, celery_session_worker):
    assert celery_session_app.tasks["celery.ping"].delay().get(timeout=10) == "pong"


def test_the_celery_names_are_the_celeriac_fixtures(celery_app, celeriac_app):
    assert celery_app is celeriac_app
"""


def test_a_celery_style_suite_passes_with_no_conftest_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_migrated=CELERY_STYLE)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=6)


def test_the_same_suite_passes_naming_the_contrib_module(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ("celeriac.contrib.pytest",)')
    pytester.makepyfile(test_migrated=CELERY_STYLE)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=6)


def test_with_autoload_off_the_contrib_module_alone_suffices(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ("celeriac.contrib.pytest",)')
    pytester.makepyfile(test_migrated=CELERY_STYLE)
    pytester.runpytest_subprocess("--strict-markers", "-p", "timeout").assert_outcomes(passed=6)


CELERIAC_STYLE = """
import pytest

from celeriac.app import Celery


@pytest.fixture(scope="session")
def celeriac_config():
    return {"task_default_queue": "mine", "result_expires": 60}


def test_the_worker_runs_tasks_of_the_app(celeriac_app, celeriac_worker):
    @celeriac_app.task
    def add(x, y):
        return x + y

    assert isinstance(celeriac_app, Celery)
    assert celeriac_worker.app is celeriac_app
    assert add.delay(2, 3).get(timeout=10) == 5


@pytest.mark.celeriac(result_expires=5)
def test_the_marker_overrides_the_config(celeriac_app):
    assert celeriac_app.conf.result_expires == 5
    assert celeriac_app.conf.task_default_queue == "mine"


def test_each_test_has_an_app_of_its_own(celeriac_app, celeriac_session_app):
    assert celeriac_app is not celeriac_session_app
    assert celeriac_app.conf.broker_url != celeriac_session_app.conf.broker_url


def test_the_celery_config_is_not_read_when_celeriac_config_is_set(celery_app):
    assert celery_app.conf.task_default_queue == "mine"
"""


def test_the_celeriac_fixtures_markers_and_overrides(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_celeriac=CELERIAC_STYLE)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=4)


def test_the_markers_are_registered_once(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    lines = [line for line in result.outlines if line.startswith("@pytest.mark.cel")]
    assert [line.split("(")[0] for line in lines] == [
        "@pytest.mark.celeriac",
        "@pytest.mark.celery",
    ]


REAL_CELERY = """
import celery


def test_celery_app_is_celerys(celery_app, celeriac_app):
    assert isinstance(celery_app, celery.Celery)
    assert type(celeriac_app).__module__.startswith("celeriac")


def test_celery_worker_is_celerys(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16
"""


def _celery_config(pytester: pytest.Pytester) -> None:
    # Celery's defaults (memory broker, cache+memory backend) are what its test suites use.
    pytester.makepyfile(
        conftest_extra="""
import pytest


@pytest.fixture(scope="session")
def celery_config():
    return {"broker_url": "memory://", "result_backend": "cache+memory://"}
"""
    )


def test_celerys_plugin_in_a_conftest_keeps_its_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ("celery.contrib.pytest", "conftest_extra")\n')
    _celery_config(pytester)
    pytester.makepyfile(test_real_celery=REAL_CELERY)
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_celerys_plugin_loaded_first_keeps_its_fixtures(pytester: pytest.Pytester) -> None:
    # `-p` plugins load before entry points: the Celery names must then stay Celery's.
    pytester.makeconftest('pytest_plugins = ("conftest_extra",)')
    _celery_config(pytester)
    pytester.makepyfile(test_real_celery=REAL_CELERY)
    result = pytester.runpytest_subprocess("-p", "celery.contrib.pytest", "--strict-markers")
    result.assert_outcomes(passed=2)


FAKE_CLOCK = """
import asyncio
import threading
import time
from datetime import UTC, datetime

from celeriac.beat.entry import Entry
from celeriac.beat.scheduler import Beat, tick_task_id
from celeriac.engines.memory.schedules import MemoryState, MemoryStore
from celeriac.schedules import crontab


def test_a_one_hour_countdown_runs_when_the_clock_is_advanced(
    celeriac_app, celeriac_worker, celeriac_clock
):
    @celeriac_app.task
    def later(x):
        return x * 2

    started = time.monotonic()
    result = later.apply_async((21,), countdown=3600)
    time.sleep(1.5)  # the worker fetched it, found it not due and left it to the broker
    assert result.state == "PENDING"
    celeriac_clock.advance(3600)
    assert result.get(timeout=10) == 42
    print(f"\\nMEASURED countdown=3600 ran after {time.monotonic() - started:.2f} s real")


def test_a_crontab_entry_ticks_when_the_clock_crosses_its_time(
    celeriac_app, celeriac_worker, celeriac_clock
):
    ran = threading.Event()

    @celeriac_app.task(name="tasks.hourly")
    def hourly():
        ran.set()

    entry = Entry("hourly", "tasks.hourly", crontab(minute=0))
    beat = Beat(celeriac_app, MemoryStore(namespace="plugin", state=MemoryState()), [entry])

    async def tick():
        return await beat.tick()

    asyncio.run(tick())  # first seen: recorded as run now, nothing sent
    assert not ran.wait(1.0)
    start = celeriac_clock.now()
    top = start.replace(minute=0, second=0, microsecond=0)
    celeriac_clock.advance(3600)  # past the next top of the hour
    asyncio.run(tick())
    assert ran.wait(10)
    next_top = datetime.fromtimestamp(top.timestamp() + 3600, UTC)
    task_id = tick_task_id("plugin", "hourly", next_top)
    assert celeriac_app.AsyncResult(task_id).get(timeout=10) is None


def test_the_clock_is_celeriacs_only_during_the_test(celeriac_clock):
    from celeriac import clock

    before = clock.wall()
    celeriac_clock.advance(10)
    assert clock.wall() == before + 10
"""


def test_the_fake_clock_runs_countdowns_and_beat_ticks_at_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_clock=FAKE_CLOCK)
    result = pytester.runpytest("-s", "--strict-markers")
    result.assert_outcomes(passed=3)
    for line in result.outlines:
        if line.startswith("MEASURED"):
            print(line)
    assert clock.wall is time.time  # uninstalled after the test


def test_the_celery_names_can_be_turned_off_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="""
import pytest


def test_celeriac_fixtures_stay(celeriac_app):
    assert celeriac_app.conf.broker_url.startswith("memory://")


def test_celery_app_is_gone(request):
    with pytest.raises(pytest.FixtureLookupError):
        request.getfixturevalue("celery_app")
"""
    )
    result = pytester.runpytest("-p", "no:celeriac.testing.celery_fixtures")
    result.assert_outcomes(passed=2)
