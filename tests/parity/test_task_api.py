"""The same small project on Celery and on celeriac: the same observable outcomes.

Known differences are not compared here and are listed in ``docs/migrating.md``:
celeriac's ``einfo.exception`` is the exception itself (Celery's may be billiard's
``ExceptionWithTraceback`` wrapper), and its eager runs see custom headers
(``request.get('x-custom')``), which Celery's eager runs drop and its workers keep.
"""

from __future__ import annotations

import pytest

from tests.parity.task_api_script import run


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, object]]:
    return {"celery": run("celery"), "celeriac": run("celeriac")}


def test_the_project_sees_the_same_outcomes(outcomes: dict[str, dict[str, object]]) -> None:
    theirs, ours = outcomes["celery"], outcomes["celeriac"]
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key] == theirs[key], key


def test_the_script_observes_what_it_claims(outcomes: dict[str, dict[str, object]]) -> None:
    """Guard against a script that compares nothing: Celery's own outcomes, spelled out."""
    theirs = outcomes["celery"]
    assert theirs["wrapped"] == "app context"
    assert theirs["failed"] == ("FAILURE", "ValueError")
    assert theirs["my_flag"] == 7
    assert ("on_failure", "p.failing", "ValueError", True, True) in theirs["events"]  # type: ignore[operator]
    assert ("after_return", "p.retry_once", "SUCCESS", "int") in theirs["events"]  # type: ignore[operator]
    assert ("on_retry", "p.retry_once", None, "Retry", True) in theirs["events"]  # type: ignore[operator]  # type: ignore[index]
    assert theirs["reject_state"] == "REJECTED"
