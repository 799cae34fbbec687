"""Real Celery and celeriac share a Redis broker and result backend, both ways round."""

from __future__ import annotations

import pytest

from tests.interop.conftest import StartWorker

pytestmark = pytest.mark.interop


def test_celery_client_celeriac_worker(start_worker: StartWorker) -> None:
    from tests.interop import celery_side

    start_worker("celeriac")
    assert celery_side.add.delay(2, 2).get(timeout=20) == 4
    assert celery_side.whoami.delay().get(timeout=20) == "celeriac"


def test_celeriac_client_celery_worker(start_worker: StartWorker) -> None:
    from tests.interop import celeriac_side

    start_worker("celery")
    assert celeriac_side.add.delay(2, 2).get(timeout=30) == 4
    assert celeriac_side.whoami.delay().get(timeout=30) == "celery"
    celeriac_side.app.close()


def test_failure_raised_with_type_and_traceback_on_the_celery_side(
    start_worker: StartWorker,
) -> None:
    from tests.interop import celery_side

    start_worker("celeriac")
    result = celery_side.fail.delay("from celeriac")
    with pytest.raises(ValueError, match="from celeriac"):
        result.get(timeout=20)
    assert result.state == "FAILURE"
    assert "ValueError: from celeriac" in result.traceback


def test_failure_raised_with_type_and_traceback_on_the_celeriac_side(
    start_worker: StartWorker,
) -> None:
    from tests.interop import celeriac_side

    start_worker("celery")
    result = celeriac_side.fail.delay("from celery")
    with pytest.raises(ValueError, match="from celery"):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert result.traceback is not None and "ValueError: from celery" in result.traceback
    celeriac_side.app.close()


def test_queues_are_shared(start_worker: StartWorker) -> None:
    from tests.interop import celeriac_side, celery_side

    start_worker("celeriac", "-Q", "alt")
    start_worker("celery", "-Q", "celery")
    assert celery_side.whoami.apply_async(queue="alt").get(timeout=30) == "celeriac"
    assert celeriac_side.whoami.apply_async(queue="celery").get(timeout=30) == "celery"
    celeriac_side.app.close()


def test_priorities_from_a_celery_client(start_worker: StartWorker) -> None:
    from tests.interop import celery_side

    # Queue both before any worker runs; the celeriac worker serves the urgent one first.
    low = celery_side.add.apply_async((1, 1), priority=0)
    high = celery_side.add.apply_async((2, 2), priority=9)
    start_worker("celeriac", "-c", "1", "--prefetch-multiplier", "1")
    assert high.get(timeout=20) == 4 and low.get(timeout=20) == 2
    assert high.date_done <= low.date_done
