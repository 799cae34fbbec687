"""The canvas on the worker side: what follows a finished task.

All of it lives in the message's embed (SPEC §2.6) and is applied with the same
canvas code clients use (``celeriac.canvas``), so any signature a Celery client
embeds (task, chain, group, chord, chunks) is followed:

* success, before the result is stored (``on_success``, as Celery does): the
  chain's next step (the *last* element of ``embed.chain``) gets the return value
  prepended (unless immutable) and the rest of the chain; ``link`` callbacks get
  it too. Their results become the task's ``children``.
* success, after the result is stored (``after_success``): a chord header task
  records its part with the backend's atomic ``chord_part_done``; the worker that
  completes the chord publishes the body with the header results in group order.
* failure, after the failure is stored (``after_failure``): the rest of the chain
  never runs and every result it would have produced is marked FAILURE with the
  same exception (Celery 5 does this too, so waiting on a chain raises instead of
  hanging); chord members in it report failed parts; a chord header task reports
  its failed part (once the chord is complete, its body fails with ChordError and
  the body's errbacks run, see ``celeriac.canvas.chord``); then the task's
  errbacks run (``celeriac.canvas.errbacks`` explains the two calling forms).
* revoked/expired (``after_revoked``): like a failure, without errbacks (Celery
  does not call errbacks for revokes either).

Publishing a follow-up raises to the handler, which requeues the delivery: the
task runs again rather than losing the rest of its workflow (at least once).
"""

from __future__ import annotations

import logging
from typing import Any

from celeriac import states
from celeriac.backends import ChordPart, ResultBackend
from celeriac.canvas.chord import chord_error_message
from celeriac.canvas.errbacks import arun_errbacks
from celeriac.canvas.signature import Dispatch, Signature, as_signature
from celeriac.exceptions import ChordError
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.results import exception_from_dict, make_meta
from celeriac.task import PUBLISH_OPTIONS
from celeriac.trace import Outcome, context_for

__all__ = ["Workflow"]

logger = logging.getLogger("celeriac.worker")

# Celery's exception module for ChordError, so Celery clients rebuild the right type.
_CELERY_EXCEPTIONS = "celery.exceptions"


class Workflow:
    """Publishes the follow-ups of finished tasks and joins chords."""

    def __init__(self, app: Any, backend: ResultBackend | None) -> None:
        self.app = app
        self.backend = backend

    def _dispatch(self) -> Dispatch:
        # Signatures from other clients may carry option keys apply_async does not take.
        return Dispatch(self.app, allowed=PUBLISH_OPTIONS)

    def _sig(self, value: Any) -> Signature:
        return as_signature(value, self.app)

    # success ---------------------------------------------------------------------------
    async def on_success(self, msg: TaskMessage, value: Any) -> list[Any]:
        """Before the result is stored: publish the next chain step and callbacks.

        Returns the ``children`` of the task's result document."""
        dispatch = self._dispatch()
        follow = _follow_options(msg)
        results = []
        if msg.chain:
            rest = list(msg.chain)
            step = rest.pop()
            options = {**follow, "chain": rest}
            results.append(self._apply(dispatch, msg, step, (value,), options))
        for callback in msg.callbacks or ():
            results.append(self._apply(dispatch, msg, callback, (value,), follow))
        await self._send(dispatch, msg)
        return [result.as_tuple() for result in results if result is not None]

    def _apply(
        self,
        dispatch: Dispatch,
        msg: TaskMessage,
        sig: Any,
        args: tuple[Any, ...],
        options: dict[str, Any],
    ) -> Any:
        """Queue a follow-up; one that cannot even be built is logged and skipped."""
        try:
            return self._sig(sig)._emit(dispatch, args, {}, options)
        except Exception:
            # Deterministic (a bad signature): requeueing the task would only loop.
            logger.exception("Task %s[%s]: cannot apply follow-up %r", msg.task, msg.id, sig)
            return None

    async def _send(self, dispatch: Dispatch, msg: TaskMessage) -> None:
        """Publish follow-ups; transient errors raise (the handler requeues), others are logged."""
        try:
            await dispatch.send()
        except OSError:
            raise
        except Exception:
            logger.exception("Task %s[%s]: publishing its follow-ups failed", msg.task, msg.id)

    async def after_success(self, msg: TaskMessage, value: Any) -> None:
        """After the result is stored: record a chord header part (maybe run the body)."""
        if msg.chord is not None and msg.group:
            await self._chord_part(
                msg.chord, msg.group, msg.group_index, (msg.id, states.SUCCESS, value), msg
            )

    # failure ---------------------------------------------------------------------------
    async def after_failure(self, msg: TaskMessage, outcome: Outcome) -> None:
        """After a failure is stored: fail the chain's rest, report chord parts, run errbacks."""
        await self._fail_downstream(msg, states.FAILURE, outcome.value, outcome.traceback)
        if not msg.errbacks:
            return
        exc = outcome.exception or exception_from_dict(outcome.value)
        request = context_for(msg, hostname=None, delivery_info=None)
        dispatch = self._dispatch()
        await arun_errbacks(
            dispatch, [self._sig(e) for e in msg.errbacks], request, exc, outcome.traceback
        )
        await self._send(dispatch, msg)

    async def after_revoked(self, msg: TaskMessage, error: dict[str, Any]) -> None:
        """After a revoke (or expiry) is stored: fail the chain's rest, report chord parts."""
        await self._fail_downstream(msg, states.REVOKED, error, None)

    async def _fail_downstream(
        self, msg: TaskMessage, state: str, value: Any, traceback: str | None
    ) -> None:
        if msg.chord is not None and msg.group:
            await self._chord_part(
                msg.chord, msg.group, msg.group_index, (msg.id, state, value), msg
            )
        for element in msg.chain or ():
            try:
                await self._fail_step(self._sig(element), state, value, traceback, msg)
            except OSError:
                raise  # transient: the handler requeues and this runs again
            except Exception:
                logger.exception(
                    "Task %s[%s]: cannot fail chain step %r", msg.task, msg.id, element
                )

    async def _fail_step(
        self, step: Signature, state: str, value: Any, traceback: str | None, msg: TaskMessage
    ) -> None:
        """Mark every result of a chain step that will never run, and report its chord part."""
        extra = {"parent_id": msg.id}
        docs = [
            (tid, make_meta(tid, state, value, traceback=traceback, extra=extra))
            for tid in step.result_ids()
        ]
        if docs and self.backend is not None:
            await self.backend.store(docs)
        body, group_id = step.options.get("chord"), step.options.get("group_id")
        if body is not None and group_id and step.id:
            part = (step.id, state, value)
            await self._chord_part(body, str(group_id), step.options.get("group_index"), part, msg)

    # chords ----------------------------------------------------------------------------
    async def _chord_part(
        self, body: Any, group_id: str, index: int | None, part: ChordPart, msg: TaskMessage
    ) -> None:
        """Record a header part; if it completes the chord, run or fail the body."""
        if self.backend is None:
            logger.error(
                "Chord %s: no result backend, its body %s can never run", group_id, body.get("task")
            )
            return
        parts = await self.backend.chord_part_done(group_id, _index(index), part, None)
        if parts is None:
            return
        sig = self._sig(body)
        failed = next((p for p in parts if p[1] in states.PROPAGATE_STATES), None)
        if failed is not None:
            await self._fail_body(sig, chord_error_message(*failed), msg)
            return
        dispatch = self._dispatch()
        options = _follow_options(msg)
        try:
            sig._emit(dispatch, ([p[2] for p in parts],), {}, options)
            await dispatch.send()
        except Exception as exc:
            # The chord was claimed: nobody else will publish the body, so record why it never ran.
            logger.exception("Chord %s: publishing the body failed", group_id)
            await self._fail_body(sig, f"Callback error: {exc!r}", msg)

    async def _fail_body(self, body: Signature, message: str, msg: TaskMessage) -> None:
        """Store ChordError for every result of the body and run the body's errbacks."""
        logger.error("Chord body %s[%s] not run: %s", body.name, body.id, message)
        error = {
            "exc_type": "ChordError",
            "exc_message": [message],
            "exc_module": _CELERY_EXCEPTIONS,
        }
        text = f"celery.exceptions.ChordError: {message}\n"
        # The same document as Celery's (no group_id/parent_id: the body never ran).
        docs = [
            (tid, make_meta(tid, states.FAILURE, error, traceback=text))
            for tid in body.result_ids()
        ]
        if docs and self.backend is not None:
            await self.backend.store(docs)
        errbacks = [self._sig(e) for e in body.options.get("link_error") or ()]
        if errbacks and body.id:
            request = context_for(_body_message(body, msg), hostname=None, delivery_info=None)
            dispatch = self._dispatch()
            await arun_errbacks(dispatch, errbacks, request, ChordError(message), text)
            await self._send(dispatch, msg)


def _index(index: int | None) -> int:
    """A part's position; Celery scores a missing group_index as +inf (last)."""
    return index if index is not None else 2**31


def _follow_options(msg: TaskMessage) -> dict[str, Any]:
    """Options of messages a finished task publishes: lineage, and where replies go.

    The caller's ``reply_to`` is passed on so that, with rpc:// results, the end of a
    chain reports to the client that started it, not to this worker.
    """
    options: dict[str, Any] = {"parent_id": msg.id, "root_id": msg.root_id or msg.id}
    if msg.reply_to:
        options["reply_to"] = msg.reply_to
    return options


def _body_message(body: Signature, parent: TaskMessage) -> TaskMessage:
    """The message the chord body would have had (the request its errbacks see)."""
    return TaskMessage(
        id=str(body.id),
        task=body.name,
        args=body.args,
        kwargs=body.kwargs,
        root_id=parent.root_id,
        parent_id=parent.id,
        group=body.options.get("group_id"),
    )
