"""The dashboard's pages in headless Chromium (Debian's, driven by Playwright) against a
worker on Redis, then on RabbitMQ: the overview and task list render, and a task sent while
the list is open appears there live and reaches SUCCESS, a failure shows its traceback, a
dead letter is listed, requeued from its button, then purged (after a confirmation), the
queues show their rates, and a chord's workflow page draws one box per task with its state.
Screenshots of every page go to the test's tmp dir, and are copied to
``$CELERIAC_SCREENSHOTS/<broker>/`` when that is set (CI keeps them as artifacts)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, chain, chord
from celeriac.web import create_app
from tests import services
from tests.web.conftest import HOSTNAME

pytestmark = [pytest.mark.redis, pytest.mark.amqp, pytest.mark.timeout(120)]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def server(client_app: Celery) -> Iterator[str]:
    """The dashboard served by uvicorn on a free loopback port; its base URL."""
    import uvicorn  # noqa: PLC0415

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(client_app, address="127.0.0.1"), log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    web.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A Chromium page (no browser download: the system's chromium)."""
    if not CHROMIUM.exists():
        services.unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def test_pages_render_and_a_task_appears_live(
    server: str, page: Any, client_app: Celery, worker: Path, tmp_path: Path
) -> None:
    page.goto(server + "/")
    page.wait_for_selector("#live-status.up")  # the event stream is open
    page.wait_for_function("document.getElementById('workers-up').textContent !== '0'")
    assert page.title() == "Overview · celeriac"
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    page.goto(server + "/workers")
    page.wait_for_selector(f"text={HOSTNAME}")
    page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)
    _set_a_rate_limit_while_events_come(page, client_app)

    page.goto(server + "/queues")
    page.wait_for_selector(f"#queues >> text={HOSTNAME}")
    page.wait_for_selector("#queues td.rate-out small.source-events")  # the tasks just run
    page.screenshot(path=str(tmp_path / "queues.png"), full_page=True)

    page.goto(server + "/tasks")
    page.wait_for_selector("#live-status.up")
    result = client_app.send_task("webw.add", args=[3, 4])
    row = page.wait_for_selector(f'tr[data-id="{result.id}"]')
    assert row is not None, worker.read_text()
    page.wait_for_selector(f'tr[data-id="{result.id}"] td.state-SUCCESS')
    assert "webw.add" in row.inner_text()
    page.screenshot(path=str(tmp_path / "tasks.png"), full_page=True)

    page.goto(f"{server}/task/{result.id}")
    assert "SUCCESS" in page.inner_text("h2")
    assert "STARTED" in page.inner_text(".timeline")
    page.screenshot(path=str(tmp_path / "task.png"), full_page=True)

    failed = client_app.send_task("webw.fail", args=["in the browser"])
    page.goto(server + "/tasks")
    page.wait_for_selector(f'tr[data-id="{failed.id}"] td.state-FAILURE')
    page.goto(f"{server}/task/{failed.id}")
    assert "ValueError: in the browser" in page.inner_text(".traceback")
    page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)

    page.goto(server + "/")  # the charts drew this minute's tasks
    page.wait_for_selector("svg.chart path.line.succeeded[d^='M']", state="attached")
    page.wait_for_selector("svg.chart path.line.failed[d^='M']", state="attached")
    page.screenshot(path=str(tmp_path / "overview-charts.png"), full_page=True)

    unknown = client_app.send_task("webw.not-there", args=[1])
    deadline = time.monotonic() + 30
    page.goto(server + "/dead-letters")
    while not page.query_selector(f'a[href$="/task/{unknown.id}"]'):
        assert time.monotonic() < deadline, worker.read_text()
        time.sleep(0.3)
        page.reload()
    row = page.locator("tr", has=page.locator(f'a[href$="/task/{unknown.id}"]'))
    assert "unregistered" in row.inner_text()
    page.screenshot(path=str(tmp_path / "dead-letters.png"), full_page=True)
    row.get_by_role("button", name="Requeue").click()
    page.wait_for_selector("text=Requeued 1 message(s).")
    _purge_the_letter_set_aside_again(page, unknown.id, worker)
    page.screenshot(path=str(tmp_path / "dead-letters-purged.png"), full_page=True)

    _draw_a_chord(page, server, client_app, worker)
    page.screenshot(path=str(tmp_path / "workflow.png"), full_page=True)
    shots = ("overview", "overview-charts", "workers", "queues", "tasks", "task", "failed",
             "dead-letters", "dead-letters-purged", "workflow")  # fmt: skip
    assert all((tmp_path / f"{name}.png").stat().st_size > 0 for name in shots)
    keep = os.environ.get("CELERIAC_SCREENSHOTS")
    if keep:
        kept = Path(keep) / str(client_app.conf.broker_url).partition(":")[0]
        kept.mkdir(parents=True, exist_ok=True)
        for name in shots:
            shutil.copy(tmp_path / f"{name}.png", kept / f"{name}.png")


def _purge_the_letter_set_aside_again(page: Any, task_id: str, worker: Path) -> None:
    """The requeued task is still unknown to the worker: it is set aside again, and its
    Purge button deletes it, once the confirmation is accepted (not when it is refused)."""
    link = f'a[href$="/task/{task_id}"]'
    deadline = time.monotonic() + 30
    while not page.query_selector(link):  # the live refresh or a reload shows it again
        assert time.monotonic() < deadline, worker.read_text()
        time.sleep(0.3)
        page.reload()
    row = page.locator("tr", has=page.locator(link))
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    row.get_by_role("button", name="Purge").click()
    assert asked == ["Delete this dead letter for good?"]
    assert "purged=" not in page.url and page.query_selector(link)  # refused: nothing sent
    page.once("dialog", lambda dialog: answer(dialog, True))
    row.get_by_role("button", name="Purge").click()
    page.wait_for_selector("text=Deleted 1 message(s) for good.")
    assert len(asked) == 2 and page.query_selector(link) is None


def _draw_a_chord(page: Any, server: str, client_app: Celery, worker: Path) -> None:
    """A chain into a chord: its workflow page draws a box per task, all SUCCESS, and the
    header's two tasks joining the body."""
    add, total = client_app.signature("webw.add"), client_app.signature("webw.total")
    flow = chain(add.clone((1, 1)), chord([add.clone((10,)), add.clone((20,))], total))
    result = flow.apply_async()
    assert result.get(timeout=30) == 34, worker.read_text()
    top: Any = result
    while top.parent is not None:  # body <- header group <- first task
        top = top.parent
    first = top.id
    page.goto(f"{server}/workflow/{first}")
    page.wait_for_selector("#live-status.up")
    page.wait_for_function(
        "document.querySelectorAll('svg.workflow g.node[data-state=SUCCESS]').length === 4"
    )  # the body's events may come after the page was drawn: the live refresh adds it
    nodes = page.query_selector_all("svg.workflow g.node")
    assert len(nodes) == 4
    assert {node.get_attribute("data-id") for node in nodes} >= {first, result.id}
    assert len(page.query_selector_all("svg.workflow line.edge.join")) == 2
    states = [text.text_content() for text in page.query_selector_all("svg.workflow text.state")]
    assert states == ["SUCCESS"] * 4


def _set_a_rate_limit_while_events_come(page: Any, client_app: Celery) -> None:
    """Type into the workers page's limits form while events refresh the page: what was
    typed stays (the live swap waits), and the button sets the limit on the worker."""
    page.wait_for_selector("#live-status.up")
    row = page.locator("tr", has_text=HOSTNAME)
    row.locator("summary", has_text="Limits").click()
    row.locator('input[name="rate"]').fill("50/m")
    row.locator('select[name="task"]').select_option("webw.add")
    assert client_app.send_task("webw.add", args=[1, 1]).get(timeout=20) == 2
    time.sleep(1.5)  # the events of that task asked for a refresh: it must not wipe the form
    assert row.locator('input[name="rate"]').input_value() == "50/m"
    row.get_by_role("button", name="Set rate limit").click()
    notice = page.wait_for_selector("p.notice").inner_text()
    assert "new rate limit set successfully" in notice, notice
