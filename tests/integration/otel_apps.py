"""Worker apps for the tracing tests: each process writes its finished spans to a JSON-lines file.

``OTEL_KIND`` says which side this process is: ``celeriac`` (instrumented by
``celeriac.telemetry``) or ``celery`` (the real Celery, instrumented by
``opentelemetry-instrumentation-celery``). Both share ``OTEL_URL`` under ``OTEL_PREFIX``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class FileExporter(SpanExporter):
    """Appends one line per span: name, kind, trace id, span id, parent span id."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                context, parent = span.get_span_context(), span.parent
                record = {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace": f"{context.trace_id:032x}" if context else None,
                    "span": f"{context.span_id:016x}" if context else None,
                    "parent": f"{parent.span_id:016x}" if parent else None,
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


def provider(path: str) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(FileExporter(path)))
    return made


KIND = os.environ.get("OTEL_KIND", "celeriac")
PREFIX = {"global_keyprefix": os.environ.get("OTEL_PREFIX", "")}
URL = os.environ.get("OTEL_URL")

if KIND == "celery":
    from celery import Celery
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    app = Celery("otel", broker=URL, backend=URL)
    CeleryInstrumentor().instrument(tracer_provider=provider(os.environ["OTEL_SPANS"]))
else:
    from celeriac import Celery  # type: ignore[assignment]
    from celeriac.telemetry import instrument

    app = Celery("otel", broker=URL, backend=URL)  # type: ignore[assignment]
    instrument(provider(os.environ["OTEL_SPANS"]))
app.conf.broker_transport_options = PREFIX
app.conf.result_backend_transport_options = PREFIX


@app.task(name="otel.add")
def add(x: int, y: int) -> int:
    return x + y
