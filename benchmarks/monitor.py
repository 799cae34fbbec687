"""Counting the Redis commands a worker sends, with ``redis-cli MONITOR``.

MONITOR prints every command the server runs: the client's own commands (``[db ip:port]``)
and, separately, those run inside Lua scripts (``[db lua]``). Round trips are estimated
from the client commands: a MULTI..EXEC block is one, a BLPOP immediately followed by an
EVALSHA from the same connection is one (the fetch pipeline), anything else one each
(non-transactional pipelines are therefore counted as several: an upper bound).
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field

from benchmarks.brokers import REDIS_HOST, REDIS_PORT

__all__ = ["CommandLog", "Monitor"]

_LINE = re.compile(r'^\d+\.\d+ \[(\d+) ([^\]]+)\] "([A-Za-z]+)"')


@dataclass
class CommandLog:
    """Commands seen on one database, in order."""

    client: list[tuple[str, str]] = field(default_factory=list)
    """(connection, command) for commands sent by clients."""
    scripted: Counter[str] = field(default_factory=Counter)
    """Commands run inside Lua scripts."""

    def client_counts(self) -> Counter[str]:
        """Client commands by name."""
        return Counter(command for _, command in self.client)

    def round_trips(self) -> int:
        """Estimated network round trips (see the module docstring)."""
        trips = 0
        in_multi: set[str] = set()
        last: dict[str, str] = {}
        for conn, command in self.client:
            if conn in in_multi:
                if command == "EXEC":
                    in_multi.discard(conn)
            elif command == "MULTI":
                in_multi.add(conn)
                trips += 1
            elif command == "EVALSHA" and last.get(conn) == "BLPOP":
                pass  # pipelined behind the BLPOP
            else:
                trips += 1
            last[conn] = command
        return trips


class Monitor:
    """Runs ``redis-cli MONITOR`` in the background and keeps one database's commands."""

    def __init__(self, db: int) -> None:
        self.db = str(db)
        self.log = CommandLog()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Monitor:
        self._proc = subprocess.Popen(
            ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "MONITOR"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            match = _LINE.match(line)
            if not match or match.group(1) != self.db:
                continue
            conn, command = match.group(2), match.group(3).upper()
            if conn == "lua":
                self.log.scripted[command] += 1
            else:
                self.log.client.append((conn, command))
