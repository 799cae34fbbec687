"""Tasks of the worker parity test, for Celery or celeriac (``PARITY_LIB``): the same code
but for the library it imports."""

from __future__ import annotations

import contextvars
import importlib
import os
from typing import Any

lib = importlib.import_module(os.environ.get("PARITY_LIB", "celeriac"))
exceptions = importlib.import_module(f"{lib.__name__}.exceptions")
URL = os.environ.get("PARITY_URL")
PREFIX = {"global_keyprefix": os.environ.get("PARITY_PREFIX", "")}

app = lib.Celery("parity", broker=URL, backend=URL)
app.conf.broker_transport_options = PREFIX
app.conf.result_backend_transport_options = PREFIX
app.conf.result_expires = 600

inside: contextvars.ContextVar[str | None] = contextvars.ContextVar("inside", default=None)


class ContextTask(app.Task):  # type: ignore[misc, name-defined]
    """Flask's recipe: each run inside a context the base class opens."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = inside.set("app context")
        try:
            return super().__call__(*args, **kwargs)
        finally:
            inside.reset(token)


@app.task(base=ContextTask, name="parity.wrapped")
def wrapped() -> str | None:
    return inside.get()


@app.task(name="parity.reject")
def reject() -> None:
    raise exceptions.Reject("bad input", False)


@app.task(bind=True, name="parity.fields")
def fields(self: Any, x: int) -> dict[str, Any]:
    req = self.request
    return {
        "custom": req.get("x-custom"),
        "shadow": req.shadow,
        "argsrepr": req.argsrepr,
        "kwargsrepr": req.kwargsrepr,
        "correlation_id_is_id": req.properties.get("correlation_id") == req.id,
        "routing_key": req.delivery_info.get("routing_key"),
        "properties_routing_key": req.properties.get("delivery_info", {}).get("routing_key"),
    }
