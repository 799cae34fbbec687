"""A 6-node Redis Cluster (3 primaries + 3 replicas) on loopback, started by the tests.

Ports 17000-17005 (cluster bus 27000-27005), data in a temporary directory, built with
``redis-cli --cluster create ... --cluster-replicas 1``. A missing ``redis-server`` or
``redis-cli`` skips the test (fails it with ``CI=true``, :func:`tests.services.unavailable`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.services import unavailable

__all__ = ["PORTS", "RedisCluster6"]

PORTS = tuple(range(17000, 17006))
"""This module's ports; the cluster bus uses each plus 10000."""


def _ask(port: int, *command: str) -> str:
    """One redis-cli command against the node at ``port`` (empty when it cannot answer)."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10
    )
    return done.stdout if done.returncode == 0 else ""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisCluster6:
    """Start, inspect and fault the six nodes; :meth:`stop` kills whatever is still running."""

    def __init__(self, workdir: Path) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                unavailable(f"{tool} is not installed (needed for the Redis Cluster tests)")
        busy = [port for port in PORTS if _listening(port)]
        if busy:
            raise RuntimeError(f"ports {busy} already in use: a previous cluster still running?")
        self.workdir = workdir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def seeds(self) -> str:
        """``host:port`` of every node, comma separated (a ``redis+cluster://`` netloc)."""
        return ",".join(f"127.0.0.1:{port}" for port in PORTS)

    def url(self, ports: tuple[int, ...] = PORTS, scheme: str = "redis+cluster") -> str:
        return f"{scheme}://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/"

    def start(self) -> RedisCluster6:
        for port in PORTS:
            self._start_node(port)
        deadline = time.monotonic() + 15
        while not all(_listening(port) for port in PORTS):
            if time.monotonic() > deadline:
                raise AssertionError("redis-server nodes did not start within 15 s")
            time.sleep(0.05)
        nodes = [f"127.0.0.1:{port}" for port in PORTS]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_healthy(30)
        return self

    def _start_node(self, port: int) -> None:
        data = self.workdir / str(port)
        data.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--appendonly", "no", "--save", "",
                "--dir", str(data), "--logfile", str(data / "redis.log")]  # fmt: skip
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL)

    def wait_healthy(self, timeout: float) -> None:
        """Until every live node says ``cluster_state:ok`` and all 16384 slots are served."""
        deadline = time.monotonic() + timeout
        while True:
            live = [p for p, proc in self.procs.items() if proc.poll() is None]
            infos = [_ask(port, "cluster", "info") for port in live]
            if infos and all("cluster_state:ok" in i and "slots_ok:16384" in i for i in infos):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster not healthy after {timeout:.0f} s: {infos!r}")
            time.sleep(0.1)

    def primaries(self) -> list[int]:
        """Ports of the live primaries."""
        return [p for p in self.live() if "role:master" in _ask(p, "info", "replication")]

    def live(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def owner_of(self, key: str) -> int:
        """Port of the primary serving ``key``'s slot."""
        slot = int(_ask(self.live()[0], "cluster", "keyslot", key).strip())
        for line in _ask(self.live()[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"no primary serves slot {slot}")

    def keys(self, pattern: str) -> list[str]:
        """Every key matching ``pattern`` on the live primaries."""
        found: list[str] = []
        for port in self.primaries():
            found += _ask(port, "--scan", "--pattern", pattern).split()
        return found

    def wait_replicated(self, port: int, timeout: float) -> None:
        """Until the primary at ``port`` has a replica that acknowledged all its writes."""
        deadline = time.monotonic() + timeout
        while _ask(port, "wait", "1", "1000").strip() != "1":
            if time.monotonic() > deadline:
                raise AssertionError(f"no replica of :{port} caught up within {timeout:.0f} s")

    def kill(self, port: int) -> None:
        """SIGKILL one node (its replica takes over after the node timeout)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
