"""OpenTelemetry tracing: a span per publish and per run, one trace across processes.

``instrument()`` connects to the publish and task signals. A publish opens a PRODUCER span
``apply_async/<task>`` and writes the trace context into the message headers (W3C
``traceparent`` / ``tracestate`` through the configured propagator); the worker reads them back
and runs the task inside a CONSUMER span ``run/<task>`` whose parent is the publish. Span names,
attributes (``celery.action``, ``celery.task_name``, ``messaging.message.id``) and header names
are those of ``opentelemetry-instrumentation-celery``, so a fleet that mixes Celery and celeriac
processes produces one trace. Needs the ``opentelemetry-api`` package (extra ``opentelemetry``);
the tracer provider is the application's to configure, as with any instrumentation.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from celeriac import signals
from celeriac._version import __version__

__all__ = ["Instrumentation", "instrument", "uninstrument"]

ACTION = "celery.action"
TASK_NAME = "celery.task_name"
MESSAGE_ID = "messaging.message.id"
RETRY_REASON = "celery.retry.reason"

#: Spans still open, by task id: at most this many (a publish that raised never closes its own).
MAX_OPEN = 10_000


class RequestGetter(Getter[Any]):
    """Reads propagation headers from a task's request (custom headers are its attributes)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            value = (getattr(carrier, "headers", None) or {}).get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, Iterable):
            return [str(item) for item in value]
        return [str(value)]

    def keys(self, carrier: Any) -> list[str]:
        return []


class Instrumentation:
    """The signal receivers and the spans they hold open between two signals."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("celeriac", __version__, tracer_provider)
        self._publishing: dict[str, AbstractContextManager[Span]] = {}
        self._running: dict[str, tuple[Span, AbstractContextManager[Span], object | None]] = {}
        self._getter = RequestGetter()

    def connect(self) -> None:
        signals.before_task_publish.connect(self.before_publish, weak=False)
        signals.after_task_publish.connect(self.after_publish, weak=False)
        signals.task_prerun.connect(self.prerun, weak=False)
        signals.task_postrun.connect(self.postrun, weak=False)
        signals.task_failure.connect(self.failure, weak=False)
        signals.task_retry.connect(self.retry, weak=False)

    def disconnect(self) -> None:
        signals.before_task_publish.disconnect(self.before_publish)
        signals.after_task_publish.disconnect(self.after_publish)
        signals.task_prerun.disconnect(self.prerun)
        signals.task_postrun.disconnect(self.postrun)
        signals.task_failure.disconnect(self.failure)
        signals.task_retry.disconnect(self.retry)

    # the publishing side ------------------------------------------------------------------
    def before_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        if not isinstance(headers, dict) or not headers.get("id"):
            return
        task_id, name = str(headers["id"]), str(headers.get("task") or sender)
        span = self.tracer.start_span(f"apply_async/{name}", kind=SpanKind.PRODUCER)
        if span.is_recording():
            span.set_attribute(ACTION, "apply_async")
            span.set_attribute(TASK_NAME, name)
            span.set_attribute(MESSAGE_ID, task_id)
        activation = trace.use_span(span, end_on_exit=True)
        activation.__enter__()
        inject(headers)  # the current span is the publish: the worker's run becomes its child
        if len(self._publishing) < MAX_OPEN:
            self._publishing[task_id] = activation
        else:
            activation.__exit__(None, None, None)

    def after_publish(self, headers: Any = None, **_: Any) -> None:
        task_id = str(headers.get("id")) if isinstance(headers, dict) else ""
        activation = self._publishing.pop(task_id, None)
        if activation is not None:
            activation.__exit__(None, None, None)

    # the running side ---------------------------------------------------------------------
    def prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task is None or not task_id:
            return
        parent = extract(task.request, getter=self._getter)
        span = self.tracer.start_span(f"run/{task.name}", context=parent, kind=SpanKind.CONSUMER)
        if span.is_recording():
            span.set_attribute(ACTION, "run")
            span.set_attribute(TASK_NAME, task.name)
            span.set_attribute(MESSAGE_ID, task_id)
        token = context_api.attach(parent)
        activation = trace.use_span(span, end_on_exit=True)
        activation.__enter__()
        if len(self._running) < MAX_OPEN:
            self._running[task_id] = (span, activation, token)

    def postrun(self, task_id: str | None = None, state: Any = None, **_: Any) -> None:
        entry = self._running.pop(task_id or "", None)
        if entry is None:
            return
        span, activation, token = entry
        if span.is_recording() and state is not None:
            span.set_attribute("celery.state", str(state))
        activation.__exit__(None, None, None)
        if token is not None:
            context_api.detach(token)  # type: ignore[arg-type]

    def failure(self, task_id: str | None = None, exception: Any = None, **_: Any) -> None:
        entry = self._running.get(task_id or "")
        if entry is None or not entry[0].is_recording():
            return
        span = entry[0]
        if isinstance(exception, BaseException):
            span.record_exception(exception)
        span.set_status(Status(StatusCode.ERROR, str(exception)))

    def retry(self, request: Any = None, reason: Any = None, **_: Any) -> None:
        entry = self._running.get(str(getattr(request, "id", "") or ""))
        if entry is not None and entry[0].is_recording() and reason is not None:
            entry[0].set_attribute(RETRY_REASON, str(reason))


_installed: Instrumentation | None = None


def instrument(tracer_provider: trace.TracerProvider | None = None) -> Instrumentation:
    """Trace publishes and task runs in this process (idempotent); returns the receivers."""
    global _installed
    if _installed is None:
        _installed = Instrumentation(tracer_provider)
        _installed.connect()
    return _installed


def uninstrument() -> None:
    """Stop tracing in this process."""
    global _installed
    if _installed is not None:
        _installed.disconnect()
        _installed = None
