"""``celeriac events``: watch a cluster's events (Celery's ``celery events``).

``--dump`` prints every event on one line, in the format of ``celery events --dump``
(``<hostname> [<UTC time>] <what>: <fields>``), so scripts reading that output keep
working. Without it, a live terminal view (rich, the ``monitor`` extra) shows the workers
with their heartbeat state and counters and the latest tasks with their state, both from
the same :class:`~celeriac.events.state.State` the Python API offers. ``--timeout`` ends
the capture after that many seconds without an event (useful in scripts and tests).
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from collections import OrderedDict
from typing import IO, Any

import click

from celeriac.events.state import State

__all__ = ["Dumper", "events"]

HUMAN_TYPES = {
    "worker-offline": "shutdown",
    "worker-online": "started",
    "worker-heartbeat": "heartbeat",
}
_NAMES_KEPT = 4095


def humanize_type(type: str) -> str:
    """``started`` for ``worker-online``; ``task succeeded`` for ``task-succeeded``."""
    return HUMAN_TYPES.get(type.lower(), type.lower().replace("-", " "))


class Dumper:
    """Prints events one per line as ``celery events --dump`` does."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self._names: OrderedDict[str, str] = OrderedDict()

    def say(self, line: str) -> None:
        """Print a line and flush (the output is often piped)."""
        print(line, file=self.out, flush=True)

    def on_event(self, event: dict[str, Any]) -> None:
        """Print one event."""
        ev = dict(event)
        stamp = dt.datetime.fromtimestamp(float(ev.pop("timestamp", 0.0)), dt.UTC)
        type = str(ev.pop("type", "")).lower()
        hostname = ev.pop("hostname", None)
        what = humanize_type(type)
        if type.startswith("task-"):
            task = self._task(type, ev)
            self.say(f"{hostname} [{stamp}] {what}{_fields(ev, task)}")
            return
        self.say(f"{hostname} [{stamp}] {what}{_fields(ev)}")

    def _task(self, type: str, ev: dict[str, Any]) -> str:
        uuid = str(ev.pop("uuid", ""))
        if type in ("task-received", "task-sent"):
            name = f"{ev.pop('name', None)}({uuid}) args={ev.pop('args', None)} "
            name += f"kwargs={ev.pop('kwargs', None)}"
            self._names[uuid] = name
            while len(self._names) > _NAMES_KEPT:
                self._names.popitem(last=False)
            return name
        return self._names.get(uuid, "")


def _fields(ev: dict[str, Any], task: str | None = None) -> str:
    text = ", ".join(f"{key}={ev[key]}" for key in sorted(ev))
    sep = ":" if text else ""
    return f"{sep} {task} {text}" if task is not None else f"{sep} {text}"


@click.command()
@click.option("-d", "--dump", is_flag=True, help="Print every event, as celery events --dump.")
@click.option("--timeout", type=float, help="Stop after this many seconds without an event.")
@click.option("--max-tasks", type=int, default=10000, show_default=True, help="Tasks kept.")
@click.option("-F", "--frequency", "--freq", type=float, default=1.0, show_default=True,
              help="Seconds between two refreshes of the live view.")  # fmt: skip
@click.pass_obj
def events(
    obj: Any, /, dump: bool, timeout: float | None, max_tasks: int, frequency: float
) -> None:
    """Watch the cluster's events: a live view of workers and tasks, or --dump."""
    app = obj.app
    if not app.events.supported:
        raise click.ClickException(f"the broker {app.broker_url} carries no events")
    if dump:
        _dump(app, timeout)
    else:
        _live(app, timeout, max_tasks, frequency)


def _dump(app: Any, timeout: float | None) -> None:
    dumper = Dumper()
    dumper.say("-> evdump: starting capture...")
    receiver = app.events.Receiver(handlers={"*": dumper.on_event})
    try:
        receiver.capture(timeout=timeout)
    except (KeyboardInterrupt, TimeoutError):
        pass


def _live(app: Any, timeout: float | None, max_tasks: int, frequency: float) -> None:
    try:
        from rich.live import Live  # noqa: PLC0415 (an optional extra)
    except ImportError as exc:
        raise click.ClickException(
            "the live view needs rich: pip install 'celeriac[monitor]' (or use --dump)"
        ) from exc
    from celeriac.cli.monitor import render  # noqa: PLC0415 (needs rich)

    gone: dict[str | None, Any] = {}  # workers that said worker-offline: still listed, OFFLINE
    state = State(
        max_tasks_in_memory=max_tasks,
        on_node_join=lambda worker: gone.pop(worker.hostname, None),
        on_node_leave=lambda worker: gone.__setitem__(worker.hostname, worker),
    )
    receiver = app.events.Receiver(handlers={"*": state.event})
    failed: list[BaseException] = []
    # One capture for the whole view (a new subscription would miss what came in between);
    # the State takes its events under its own lock while this thread redraws.
    capture = threading.Thread(target=_capture, args=(receiver, failed), daemon=True)
    capture.start()
    seen, quiet_since = -1, time.monotonic()
    with Live(render(state, app, gone), auto_refresh=False) as live:
        try:
            while capture.is_alive():
                time.sleep(frequency)
                live.update(render(state, app, gone), refresh=True)
                if state.event_count != seen:
                    seen, quiet_since = state.event_count, time.monotonic()
                elif timeout is not None and time.monotonic() - quiet_since >= timeout:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            receiver.should_stop = True
    capture.join(timeout=2.0)
    if failed:
        raise click.ClickException(f"receiving events failed: {failed[0]}")


def _capture(receiver: Any, failed: list[BaseException]) -> None:
    try:
        receiver.capture()
    except Exception as exc:
        failed.append(exc)
