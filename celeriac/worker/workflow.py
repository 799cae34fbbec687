"""The canvas on the worker side: what to publish after a task finishes.

A chain's next link, ``link``/``link_error`` callbacks, and (later) chord joins
all live in the message's embed (SPEC §2.6); this module turns them into new
messages. The handler calls it after recording the task's own result.
"""

from __future__ import annotations

from typing import Any

from celeriac.backends import ResultBackend
from celeriac.protocol.message import TaskMessage
from celeriac.trace import Outcome

__all__ = ["Workflow"]


class Workflow:
    """Publishes the follow-up messages of finished tasks."""

    def __init__(self, app: Any, backend: ResultBackend | None) -> None:
        self.app = app
        self.backend = backend

    async def on_success(self, msg: TaskMessage, value: Any) -> list[Any]:
        """Before the result is stored: publish the chain's next link; return ``children``."""
        if not msg.chain:
            return []
        rest = list(msg.chain)
        nxt = dict(rest.pop())
        options = dict(nxt.get("options") or {})
        if rest:
            options["chain"] = rest
        args = list(nxt.get("args") or [])
        if not nxt.get("immutable"):
            args = [value, *args]
        child_id = await self._send(nxt, args, options, msg)
        return [[[child_id, None], None]]

    async def after_success(self, msg: TaskMessage, value: Any) -> None:
        """After the result is stored: run ``link`` callbacks with the return value."""
        await self._publish_links(msg.callbacks, msg, [value])

    async def after_failure(self, msg: TaskMessage, outcome: Outcome) -> None:
        """After a failure is stored: run ``link_error`` callbacks with the task id."""
        await self._publish_links(msg.errbacks, msg, [msg.id])

    async def _publish_links(self, links: list[dict[str, Any]] | None, msg: TaskMessage, prepend: list[Any]) -> None:
        for link in links or ():
            args = list(link.get("args") or [])
            if not link.get("immutable"):
                args = [*prepend, *args]
            await self._send(link, args, dict(link.get("options") or {}), msg)

    async def _send(self, sig: dict[str, Any], args: list[Any], options: dict[str, Any], parent: TaskMessage) -> str:
        options.setdefault("parent_id", parent.id)
        options.setdefault("root_id", parent.root_id)
        allowed = {k: v for k, v in options.items() if k not in {"subtask_type", "immutable"}}
        task = self.app.tasks.get(sig["task"])
        request = self.app.build_request(sig["task"], args, sig.get("kwargs") or {}, allowed, task)
        await self.app.apublish([request])
        return str(request.message.id)
