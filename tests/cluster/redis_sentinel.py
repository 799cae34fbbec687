"""A Redis primary, one replica and three sentinels on loopback, started by the tests.

Ports: primary 16380, replica 16381, sentinels 26380-26382 (``redis-server --sentinel``),
data in a temporary directory, no persistence. Sentinels declare the primary down after
1 s and fail over within ~1-3 s (given up on after 10 s). A missing ``redis-server`` or
``redis-cli`` skips the test (fails it with ``CI=true``, :func:`tests.services.unavailable`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.services import unavailable

__all__ = ["MASTER", "PRIMARY", "REPLICA", "SENTINELS", "SentinelTopology", "ask", "listening"]

MASTER = "r25sentinel"
"""The monitored master's name (the ``master_name`` transport option)."""
PRIMARY, REPLICA = 16380, 16381
SENTINELS = (26380, 26381, 26382)


def ask(port: int, *command: str) -> str:
    """One redis-cli command against ``port`` (empty when it cannot answer)."""
    try:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if done.returncode == 0 else ""


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class SentinelTopology:
    """Start, inspect and fault the five processes; :meth:`stop` kills what still runs."""

    def __init__(self, workdir: Path) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                unavailable(f"{tool} is not installed (needed for the Redis Sentinel tests)")
        busy = [p for p in (PRIMARY, REPLICA, *SENTINELS) if listening(p)]
        if busy:
            raise RuntimeError(f"ports {busy} already in use: a previous topology still running?")
        self.workdir = workdir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, sentinels: tuple[int, ...] = SENTINELS, db: int = 0) -> str:
        """A ``sentinel://`` URL list naming ``sentinels``."""
        return ";".join(f"sentinel://127.0.0.1:{port}/{db}" for port in sentinels)

    def start(self) -> SentinelTopology:
        self._server(PRIMARY)
        self._server(REPLICA, "--replicaof", "127.0.0.1", str(PRIMARY))
        self._wait(lambda: "master_link_status:up" in ask(REPLICA, "info", "replication"), 20,
                   "the replica to sync")  # fmt: skip
        for port in SENTINELS:
            self._sentinel(port)
        self._wait(self._sentinels_agree, 30, "three sentinels to see the primary and each other")
        return self

    def _server(self, port: int, *extra: str) -> None:
        data = self.workdir / str(port)
        data.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--enable-debug-command", "local",
                "--appendonly", "no", "--dir", str(data), "--logfile", str(data / "redis.log"),
                *extra]  # fmt: skip
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        self._wait(lambda: listening(port), 15, f"redis-server :{port}")

    def _sentinel(self, port: int) -> None:
        data = self.workdir / f"sentinel-{port}"
        data.mkdir(parents=True, exist_ok=True)
        conf = data / "sentinel.conf"  # sentinel rewrites it: its own writable copy
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {data}\nlogfile {data / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {PRIMARY} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            # A promotion not seen within this is given up on: a loaded machine's replica
            # can take longer than 3 s to report its new role, which a test cannot afford.
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        self.procs[port] = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL
        )
        self._wait(lambda: listening(port), 15, f"sentinel :{port}")

    @staticmethod
    def _sentinel_fields(port: int) -> dict[str, str]:
        """What sentinel ``port`` says of the master (``SENTINEL MASTER``), by field."""
        info = ask(port, "sentinel", "master", MASTER).split()
        return dict(zip(info[::2], info[1::2], strict=False))

    def _sentinels_agree(self) -> bool:
        for port in SENTINELS:
            fields = self._sentinel_fields(port)
            if fields.get("num-other-sentinels") != "2" or fields.get("num-slaves") != "1":
                return False
        return True

    @staticmethod
    def _wait(check: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def master(self) -> int:
        """The port the sentinels name as master now."""
        reply = ask(SENTINELS[0], "sentinel", "get-master-addr-by-name", MASTER).split()
        return int(reply[1]) if len(reply) == 2 else 0

    def other(self, port: int) -> int:
        """The other data node."""
        return REPLICA if port == PRIMARY else PRIMARY

    def wait_replicated(self, timeout: float) -> None:
        """Until the master's replica acknowledged all its writes."""
        master = self.master()
        self._wait(lambda: ask(master, "wait", "1", "1000").strip() == "1", timeout,
                   "the replica to catch up")  # fmt: skip

    def wait_failover(self, old: int, timeout: float) -> float:
        """Until the sentinels name the other node master and it says so; seconds taken.

        A coordinated failover the sentinels gave up on (the promoted replica did not report
        in within ``failover-timeout``, as can happen on a busy machine) is not tried again
        by them while the master is healthy: after 10 s with no sentinel failing over and
        ``old`` still master, it is asked for once more."""
        new, began = self.other(old), time.monotonic()
        retry_at = began + 10

        def promoted() -> bool:
            nonlocal retry_at
            if self.master() == new:
                return "role:master" in ask(new, "info", "replication")
            if self.procs[old].poll() is None and time.monotonic() > retry_at and self._gave_up():
                ask(SENTINELS[0], "sentinel", "failover", MASTER)  # (refused while settling)
                retry_at = time.monotonic() + 10
            return False

        try:
            self._wait(promoted, timeout, "the sentinels to promote the replica")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}\n{self.sentinel_logs()}") from None
        return time.monotonic() - began

    def sentinel_logs(self, lines: int = 40) -> str:
        """The last ``lines`` of each sentinel's log: why a failover did (not) happen."""
        tails = []
        for port in SENTINELS:
            log = self.workdir / f"sentinel-{port}" / "sentinel.log"
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            tails.append(f"--- sentinel :{port}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails)

    def _gave_up(self) -> bool:
        """No sentinel is failing over, and the master is still the one before."""
        for port in SENTINELS:
            flags = self._sentinel_fields(port).get("flags", "")
            if not flags or "failover_in_progress" in flags:
                return False
        return "role:master" in ask(self.master(), "info", "replication")

    def switch(self) -> int:
        """A coordinated failover (``SENTINEL FAILOVER``): the master is demoted to a
        replica, alive, and answers writes with READONLY. The old master's port."""
        old = self.master()
        deadline = time.monotonic() + 30
        # Refused (NOGOODSLAVE, INPROG) while the sentinels still settle a failover before.
        while "OK" not in (reply := ask(SENTINELS[0], "sentinel", "failover", MASTER)):
            if time.monotonic() > deadline:
                raise AssertionError(f"SENTINEL FAILOVER refused for 30 s: {reply!r}")
            time.sleep(0.2)
        return old

    def kill(self, port: int) -> None:
        """SIGKILL one process."""
        proc = self.procs[port]
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
