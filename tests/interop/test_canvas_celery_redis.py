"""Canvas interop over Redis: chains and chords started by one side complete on the other.

Uses the shared fixtures of ``tests/interop/conftest.py`` (a dedicated Redis db, worker
processes of either kind) and their ``interop.add``/``interop.fail`` tasks. ``add`` also
concatenates lists, so ``add.s([100])`` is a chord body: ``add([header results], [100])``.
Chords exercise both sides' chord counters in Celery's ``celery-taskset-meta-<gid>.s/.j``
keys: the client's ``set_chord_size`` and the workers' part returns.
"""

from __future__ import annotations

import pytest

from tests.interop.conftest import StartWorker

pytestmark = [pytest.mark.interop, pytest.mark.redis]
WAIT = 30


def test_celery_chain_and_chord_on_a_celeriac_worker(start_worker: StartWorker) -> None:
    import celery

    from tests.interop.celery_side import add

    start_worker("celeriac")
    chained = celery.chain(add.s(1, 1), add.s(10), add.s(5)).apply_async()
    assert chained.get(timeout=WAIT) == 17
    assert chained.parent.get(timeout=WAIT) == 12
    joined = celery.chord([add.s(i, i) for i in range(3)], add.s([100])).apply_async()
    assert joined.get(timeout=WAIT) == [0, 2, 4, 100]
    nested = celery.chain(add.s(1, 1), celery.group(add.s(1), add.s(2)), add.s([7])).apply_async()
    assert nested.get(timeout=WAIT) == [3, 4, 7]


def test_celery_chord_with_failing_header_on_a_celeriac_worker(start_worker: StartWorker) -> None:
    import celery
    from celery.exceptions import ChordError

    from tests.interop.celery_side import add, fail

    start_worker("celeriac")
    result = celery.chord([add.s(1, 1), fail.si("header boom")], add.s([0])).apply_async()
    failing = result.parent.results[1].id
    # Celery's get() re-raises a failed parent (the header task) first; the body's own
    # result is the ChordError the celeriac worker stored.
    value = result.get(timeout=WAIT, propagate=False)
    assert isinstance(value, ChordError)
    assert str(value) == f"Dependency {failing} raised ValueError('header boom')"
    assert result.state == "FAILURE"


def test_celeriac_chain_and_chord_on_a_celery_worker(start_worker: StartWorker) -> None:
    import celeriac
    from tests.interop.celeriac_side import add, app

    start_worker("celery")
    try:
        chained = celeriac.chain(add.s(1, 1), add.s(10), add.s(5)).apply_async()
        assert chained.get(timeout=WAIT) == 17
        joined = celeriac.chord([add.s(i, i) for i in range(3)], add.s([100])).apply_async()
        assert joined.get(timeout=WAIT) == [0, 2, 4, 100]
        nested = celeriac.chain(add.s(1, 1), celeriac.group(add.s(1), add.s(2)), add.s([7]))
        assert nested.apply_async().get(timeout=WAIT) == [3, 4, 7]
    finally:
        app.close()


def test_celeriac_chord_with_failing_header_on_a_celery_worker(start_worker: StartWorker) -> None:
    import celeriac
    from tests.interop.celeriac_side import add, app, fail

    start_worker("celery")
    try:
        result = celeriac.chord([add.s(1, 1), fail.si("header boom")], add.s([0])).apply_async()
        failing = result.parent.results[1].id
        # As Celery's get(): the header task's own exception; the body holds the ChordError.
        with pytest.raises(ValueError, match="header boom"):
            result.get(timeout=WAIT)
        body = result.get(timeout=WAIT, propagate=False)
        assert type(body).__name__ == "ChordError"
        assert str(body).startswith(f"Dependency {failing} raised")
    finally:
        app.close()


def test_one_chord_counted_by_both_kinds_of_worker(start_worker: StartWorker) -> None:
    """Header tasks shared by a Celery and a celeriac worker complete one chord."""
    import celery

    from tests.interop.celery_side import add

    start_worker("celeriac")
    start_worker("celery")
    result = celery.chord([add.s(i, 1) for i in range(12)], add.s([])).apply_async()
    assert result.get(timeout=WAIT) == list(range(1, 13))
