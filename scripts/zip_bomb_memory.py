"""Peak memory of a worker's decoder given a zlib "bomb", with and without the size limit.

Run: ``python scripts/zip_bomb_memory.py``. Each case runs in a fresh process (so one
case's peak does not hide another's) and prints the compressed size and the peak RSS of
decoding one task message whose body inflates to 400 MB of JSON whitespace, with
``task_message_max_size`` at 0 (no limit: what every worker did before it existed) and at
its default (64 MiB).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import zlib

from celeriac.exceptions import MessageError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import decode_task

INFLATED = 400 * 1024 * 1024


def _case(max_size: int) -> dict[str, object]:
    compressor = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    parts = [compressor.compress(b"[")]
    parts += [compressor.compress(chunk) for _ in range(INFLATED // len(chunk))]
    parts.append(compressor.compress(b"[], {}, {}]") + compressor.flush())
    body = b"".join(parts)
    del chunk
    headers = {"task": "t", "id": "bomb", "compression": "application/x-gzip"}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_task(Envelope(body=body, headers=headers), ["json"], max_size)
        outcome = "decoded"
    except MessageError as exc:
        outcome = f"refused: {exc}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "max_size": max_size,
        "compressed_bytes": len(body),
        "peak_rss_before_mib": round(before / 1024, 1),
        "peak_rss_after_mib": round(peak / 1024, 1),
        "outcome": outcome,
    }


def main() -> None:
    """Run each case in its own interpreter and print one JSON line per case."""
    if len(sys.argv) == 2:
        print(json.dumps(_case(int(sys.argv[1]))))
        return
    for max_size in (0, 64 * 1024 * 1024):
        done = subprocess.run(
            [sys.executable, __file__, str(max_size)], capture_output=True, text=True, check=True
        )
        print(done.stdout.strip())


if __name__ == "__main__":
    main()
