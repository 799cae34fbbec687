"""The result API behaves as Celery's: the same script on a Celery and a celeriac worker.

Each test runs one scenario twice over Redis: with the ``celery`` package (client and a
``celery worker``), then with celeriac (client and a ``celeriac worker``), on the tasks of
``tests/interop/result_api_app.py``, and compares what the scenario observed: return
shapes, types and exception types of ``AsyncResult``/``GroupResult``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import ROOT

pytestmark = [pytest.mark.interop, pytest.mark.redis, pytest.mark.timeout(180)]
WAIT = 30

Scenario = Callable[[Any, Any], dict[str, Any]]


@pytest.fixture
def on_both(interop_url: str, tmp_path: Path) -> Iterator[Callable[[Scenario], list[Any]]]:
    """Run a scenario ``(lib, app) -> observations`` on Celery, then on celeriac."""
    from tests.services import delete_prefixed, redis_client

    def run(scenario: Scenario) -> list[Any]:
        seen = []
        for kind in ("celery", "celeriac"):
            module = importlib.import_module(f"tests.interop.result_api_{kind}")
            lib = importlib.import_module(kind)
            proc = _start(kind, interop_url, tmp_path)
            try:
                seen.append(scenario(lib, module.app))
            finally:
                _stop(proc)
                client = redis_client()
                delete_prefixed(client, os.environ["INTEROP_PREFIX"])
                client.close()
        return seen

    yield run


def _start(kind: str, url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    pool = ["-P", "solo"] if kind == "celery" else ["-c", "2"]
    command = [sys.executable, "-m", kind, "-A", f"tests.interop.result_api_{kind}", "worker"]
    env = {**os.environ, "INTEROP_URL": url, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / f"{kind}.log").open("wb")
    proc = subprocess.Popen(
        [*command, *pool, "-l", "info"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    time.sleep(1.5)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _same(seen: list[dict[str, Any]]) -> dict[str, Any]:
    celery_saw, celeriac_saw = seen
    assert celeriac_saw == celery_saw
    return celery_saw


def _kind(value: Any) -> str:
    return type(value).__name__


def _children_values(result: Any) -> list[Any]:
    """The values of a result's children, waited for."""
    return [child.get(timeout=WAIT) for child in result.children or []]


def _raises(call: Callable[[], Any]) -> str | None:
    """The type name of what ``call()`` raises, or None."""
    try:
        call()
    except Exception as exc:
        return _kind(exc)
    return None


def test_result_extended_fields(on_both: Callable[[Scenario], list[Any]]) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        done = app.tasks["ra.add"].delay(2, y=3)
        done.get(timeout=WAIT)
        retried = app.tasks["ra.retry_once"].delay()
        return {
            "name": done.name,
            "args": done.args,
            "kwargs": done.kwargs,
            "worker": done.worker is not None and "@" in done.worker,
            "queue": done.queue,
            "retries": done.retries,
            "date_done": isinstance(done.date_done, dt.datetime),
            "retried": (retried.get(timeout=WAIT), retried.retries),
            "unknown": [app.AsyncResult(str(uuid.uuid4())).name, done.exists()],
        }

    seen = _same(on_both(scenario))
    assert seen["name"] == "ra.add" and seen["queue"] == "celery" and seen["retried"] == (1, 1)


def test_children_collect_and_graph(on_both: Callable[[Scenario], list[Any]]) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        lonely = app.tasks["ra.add"].delay(1, 1)
        lonely.get(timeout=WAIT)
        parent = app.tasks["ra.spawn"].delay(2)
        parent.get(timeout=WAIT)
        for child in parent.children:
            child.get(timeout=WAIT)
        chained = lib.chain(app.tasks["ra.add"].s(1, 1), app.tasks["ra.add"].s(2)).apply_async()
        chained.get(timeout=WAIT)
        graph = parent.build_graph()
        missing = app.AsyncResult(str(uuid.uuid4()))
        try:
            list(missing.iterdeps())
            incomplete = None
        except Exception as exc:
            incomplete = _kind(exc)
        return {
            "none": lonely.children,
            "pending": missing.children,
            "exists": missing.exists(),
            "kinds": [_kind(c) for c in parent.children],
            "collect": [(_kind(r), v) for r, v in parent.collect(timeout=WAIT)],
            "graph": (len(graph), len(graph[parent]), parent in graph),
            "chain": [c.id == chained.id for c in chained.parent.children],
            "incomplete": incomplete,
            "deps": [v for _, v in missing.iterdeps(intermediate=True)] == [missing],
        }

    seen = _same(on_both(scenario))
    assert seen["collect"] == [("AsyncResult", "spawned"), ("AsyncResult", 0), ("AsyncResult", 2)]
    assert seen["incomplete"] == "IncompleteStream"


def test_then_calls_back_with_the_result(on_both: Callable[[Scenario], list[Any]]) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        called: list[str] = []
        result = app.tasks["ra.add"].delay(1, 2)
        result.then(lambda r: called.append(r.id))
        result.get(timeout=WAIT)
        members = lib.group(app.tasks["ra.add"].s(i, i) for i in range(2)).apply_async()
        members.get(timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while not called and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"called": called == [result.id], "children": [_kind(c) for c in members.children]}

    seen = _same(on_both(scenario))
    assert seen["called"] is True


def test_failing_chord_header_raises_the_original_exception(
    on_both: Callable[[Scenario], list[Any]],
) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        add, fail = app.tasks["ra.add"], app.tasks["ra.fail"]
        result = lib.chord([add.s(1, 1), fail.si("header boom")], add.s([0])).apply_async()
        try:
            result.get(timeout=WAIT)
            raised = None
        except Exception as exc:
            raised = (_kind(exc), str(exc))
        body = result.get(timeout=WAIT, propagate=False)
        return {"raised": raised, "body": _kind(body), "state": result.state}

    seen = _same(on_both(scenario))
    assert seen["raised"] == ("ValueError", "header boom")


def test_abortable_task(on_both: Callable[[Scenario], list[Any]]) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        task = app.tasks["ra.until_aborted"]
        result = task.delay(WAIT)
        before = result.is_aborted()
        result.abort()
        asked = (result.state, result.is_aborted())
        value = result.get(timeout=WAIT)
        return {
            "result": _kind(result),
            "before": before,
            "asked": asked,
            "value": value,
            "after": (result.state, result.is_aborted()),
            "outside": _raises(task.is_aborted),
        }

    seen = _same(on_both(scenario))
    assert seen["value"] == "aborted" and seen["asked"] == ("ABORTED", True)


def test_replace_and_add_to_chord(on_both: Callable[[Scenario], list[Any]]) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        add, replace_with = app.tasks["ra.add"], app.tasks["ra.replace_with"]
        grow, ordered = app.tasks["ra.grow"], app.tasks["ra.ordered"]
        by_task = replace_with.delay("task")
        in_chain = lib.chain(replace_with.si("chain"), add.s(1)).apply_async()
        by_group = replace_with.delay("group")
        in_chord = lib.chord([replace_with.si("task"), add.si(1, 1)], ordered.s()).apply_async()
        grown = lib.chord([grow.s(1), add.si(2, 2)], ordered.s()).apply_async()
        identity = app.tasks["ra.identity"]
        by_group_in_chord = lib.chord(
            [replace_with.si("group"), add.si(1, 1)], identity.s()
        ).apply_async()
        by_chain_in_chord = lib.chord(
            [replace_with.si("chain"), add.si(1, 1)], identity.s()
        ).apply_async()
        linked = replace_with.apply_async(("task",), link=add.s(100))
        return {
            "task": by_task.get(timeout=WAIT),
            "chain": in_chain.get(timeout=WAIT),
            "group": by_group.get(timeout=WAIT),
            "chord": in_chord.get(timeout=WAIT),
            "grown": grown.get(timeout=WAIT),
            "group_in_chord": by_group_in_chord.get(timeout=WAIT),
            "chain_in_chord": by_chain_in_chord.get(timeout=WAIT),
            "linked": [linked.get(timeout=WAIT), _children_values(linked)],
            "outside": _raises(lambda: grow(1)),
        }

    seen = _same(on_both(scenario))
    assert seen["task"] == 15 and seen["grown"] == [1, 4, 101]


def test_stamping(on_both: Callable[[Scenario], list[Any]]) -> None:
    def scenario(lib: Any, app: Any) -> dict[str, Any]:
        class Monitor(lib.canvas.StampingVisitor):  # type: ignore[misc]
            def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
                return {"monitoring_id": "m-1"}

        task = app.tasks["ra.stamps"]
        plain = task.s()
        plain.stamp(tenant="acme")
        visited = task.s()
        visited.stamp(visitor=Monitor())
        members = lib.group(task.s(), task.s())
        members.stamp(visitor=Monitor(), batch="b-1")
        steps = lib.chain(task.si(), task.si())
        steps.stamp(visitor=Monitor())
        joined = lib.chord([task.si()], task.s())
        joined.stamp(visitor=Monitor(), batch="b-2")
        return {
            "options": sorted(plain.options["stamped_headers"]),
            "plain": plain.apply_async().get(timeout=WAIT),
            "visited": visited.apply_async().get(timeout=WAIT),
            "group": members.apply_async().get(timeout=WAIT),
            "chain": steps.apply_async().get(timeout=WAIT),
            "chord": joined.apply_async().get(timeout=WAIT),
        }

    seen = _same(on_both(scenario))
    assert seen["plain"] == [{"tenant": "acme"}, ["tenant"]]
