"""The Task API in a real worker: Task.__call__ wraps every run, Reject, request fields,
handlers and decorator options, as in Celery."""

from __future__ import annotations

import pytest

from celeriac import Celery, signals, states
from celeriac.exceptions import Reject
from tests.worker import task_api_apps as ta
from tests.worker.conftest import StartWorker

pytestmark = pytest.mark.parametrize("app", ["memory"], indirect=True)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
async def test_an_overridden_call_wraps_every_sync_run(
    app: Celery, start_worker: StartWorker, pool: str
) -> None:
    await start_worker(pool=pool)
    wrapped = await ta.in_context.adelay()
    plain = await ta.plain.adelay()
    assert await wrapped.aget(timeout=10) == "context of ta.in_context"
    assert await plain.aget(timeout=10) is None


async def test_an_overridden_call_wraps_async_runs(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    result = await ta.async_in_context.adelay()
    assert await result.aget(timeout=10) == "context of ta.async_in_context"


async def test_reject_without_requeue_records_failure(
    app: Celery, start_worker: StartWorker
) -> None:
    failures: list[object] = []

    def receiver(sender: object = None, exception: object = None, **_: object) -> None:
        failures.append(exception)

    signals.task_failure.connect(receiver)
    try:
        await start_worker(pool="prefork")
        result = await ta.reject.adelay()
        with pytest.raises(Reject):
            await result.aget(timeout=10)
        assert (await result.ameta())["status"] == states.FAILURE
        assert len(failures) == 1 and isinstance(failures[0], Reject)
    finally:
        signals.task_failure.disconnect(receiver)


async def test_request_has_celery_fields_and_custom_headers(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker(pool="prefork")
    result = await ta.request_fields.aapply_async(
        headers={"x-custom": "tenant-1"}, shadow="shown.name", argsrepr="(secret)"
    )
    fields = await result.aget(timeout=10)
    assert fields == {
        "shadow": "shown.name",
        "argsrepr": "(secret)",
        "kwargsrepr": "{}",
        "custom": "tenant-1",
        "correlation_id": result.id,
        "routing_key": "celery",
        "stamps": {},
    }


async def test_option_handlers_bind_and_get_an_exception_info(
    app: Celery, start_worker: StartWorker
) -> None:
    ta.seen.clear()
    await start_worker()
    result = await ta.failing.adelay()
    with pytest.raises(ValueError, match="broken"):
        await result.aget(timeout=10)
    assert ta.failing.my_flag == 7
    assert ta.seen == [("on_failure", ("ta.failing", True, True))]


async def test_after_return_does_not_fire_on_retry(app: Celery, start_worker: StartWorker) -> None:
    ta.seen.clear()
    await start_worker()
    result = await ta.retry_once.adelay()
    assert await result.aget(timeout=10) == 1
    assert ta.seen == [("after_return", states.SUCCESS)]
