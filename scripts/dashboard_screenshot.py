"""Take the README's screenshot of the dashboard's overview (docs/img/dashboard-overview.png).

Runs a worker with -E on Redis (db 9, keys under a fresh prefix, deleted afterwards), serves
the dashboard with uvicorn, sends 40 tasks that succeed and 4 that fail, and photographs the
overview in Debian's chromium. Usage: ``.venv/bin/python scripts/dashboard_screenshot.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("CELERIAC_SHOT_REDIS_URL", "redis://127.0.0.1:6379/9")
PREFIX = f"webshot-{uuid.uuid4().hex[:8]}:"
OUT = ROOT / "docs" / "img" / "dashboard-overview.png"


def main() -> None:
    os.environ.update(CELERIAC_BROKER_URL=URL, CELERIAC_RESULT_BACKEND=URL, TEST_KEYPREFIX=PREFIX)
    sys.path.insert(0, str(ROOT))
    import redis  # noqa: PLC0415
    import uvicorn  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    from celeriac.web import create_app  # noqa: PLC0415
    from tests.web import web_app  # noqa: PLC0415

    worker = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "tests.web.web_app", "worker", "-E",
         "-c", "2", "-P", "threads", "-n", "alpha@demo"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(web_app.app), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    try:
        time.sleep(3)  # the worker's first heartbeat
        for i in range(40):
            web_app.add.delay(i, i)
        for i in range(4):
            web_app.fail.delay(f"bad input {i}")
        time.sleep(5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1200, "height": 720})
            page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            page.wait_for_selector("#live-status.up")
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
    finally:
        server.should_exit = True
        worker.terminate()
        worker.wait(20)
        client = redis.Redis.from_url(URL)
        keys = list(client.scan_iter(match=PREFIX + "*"))
        if keys:
            client.unlink(*keys)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
