"""Peak memory given a zlib "bomb", with and without ``task_message_max_size``.

Run: ``python scripts/zip_bomb_memory.py``. The bomb is one task message whose body (about
400 KB compressed) inflates to 400 MB of JSON whitespace. Two measurements, each case with
the limit at 0 (no limit: what every worker did before the setting existed) and at its default
(64 MiB), each in a fresh process so one case's peak does not hide another's:

* ``decoder``: the peak RSS of a process that decodes the message once;
* ``worker``: the peak RSS (``VmHWM``) of a real worker process (threads pool, a temporary
  SQLite broker) before the bomb is queued and after it has dealt with it.

It prints one JSON line per case.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from celeriac import Celery
from celeriac.exceptions import MessageError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import decode_task
from celeriac.transport.base import Outgoing

INFLATED = 400 * 1024 * 1024
LIMITS = (0, 64 * 1024 * 1024)
_APP = """
from celeriac import Celery
app = Celery("bomb")
app.conf.task_message_max_size = {limit}

@app.task(name="bomb.t")
def t(*args):
    return None
"""


def _bomb() -> bytes:
    compressor = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    parts = [compressor.compress(b"[")]
    parts += [compressor.compress(chunk) for _ in range(INFLATED // len(chunk))]
    parts.append(compressor.compress(b"[], {}, {}]") + compressor.flush())
    return b"".join(parts)


def _envelope(body: bytes) -> Envelope:
    headers = {"task": "bomb.t", "id": "bomb", "compression": "application/x-gzip"}
    return Envelope(body=body, headers=headers)


def _decoder_case(max_size: int) -> dict[str, object]:
    body = _bomb()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_task(_envelope(body), ["json"], max_size)
        outcome = "decoded"
    except MessageError as exc:
        outcome = f"refused: {exc}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "measure": "decoder",
        "max_size": max_size,
        "compressed_bytes": len(body),
        "peak_rss_before_mib": round(before / 1024, 1),
        "peak_rss_after_mib": round(peak / 1024, 1),
        "outcome": outcome,
    }


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _worker_case(max_size: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/broker.sqlite"
        (Path(folder) / "bombapp.py").write_text(_APP.format(limit=max_size))
        env = {**os.environ, "CELERIAC_BROKER_URL": url, "PYTHONPATH": folder}
        command = [sys.executable, "-m", "celeriac", "-A", "bombapp", "worker", "-P", "threads"]
        log = Path(folder) / "worker.log"
        worker = subprocess.Popen(
            [*command, "-c", "1", "-l", "info"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            while "ready." not in log.read_text():
                time.sleep(0.1)
            time.sleep(1.0)
            before = _peak_kib(worker.pid)
            client = Celery("bomb-client", broker=url)
            client.run_sync(_send(client, _bomb()))
            deadline = time.monotonic() + 60
            while not _dealt_with(log.read_text()) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            after = _peak_kib(worker.pid)
            client.close()
            lines = [line for line in log.read_text().splitlines() if _dealt_with(line)]
        finally:
            worker.terminate()
            worker.wait(30)
    return {
        "measure": "worker",
        "max_size": max_size,
        "peak_rss_before_mib": round(before / 1024, 1),
        "peak_rss_after_mib": round(after / 1024, 1),
        "log": lines[-1][:160] if lines else "",
    }


def _dealt_with(text: str) -> bool:
    """Whether the worker log says the bomb was run or refused."""
    return "bomb.t[bomb] succeeded" in text or "dead-letter store" in text


async def _send(client: Celery, body: bytes) -> None:
    transport = await client.aget_transport()
    await transport.publish([Outgoing(_envelope(body), "", "celery")])


def main() -> None:
    """Run each case in its own interpreter and print one JSON line per case."""
    if len(sys.argv) == 3:
        case = _decoder_case if sys.argv[1] == "decoder" else _worker_case
        print(json.dumps(case(int(sys.argv[2]))))
        return
    for measure in ("decoder", "worker"):
        for max_size in LIMITS:
            done = subprocess.run(
                [sys.executable, __file__, measure, str(max_size)],
                capture_output=True,
                text=True,
                check=True,
            )
            print(done.stdout.strip())


if __name__ == "__main__":
    main()
