"""FastAPI (and Starlette) helpers: the celeriac app opened with the web app, and handed to
endpoints as a dependency.

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from celeriac import Celery
    from celeriac.contrib.fastapi import celeriac_app, lifespan

    celery = Celery("proj", broker="redis://localhost:6379/0", backend="redis://...")
    api = FastAPI(lifespan=lifespan(celery))

    @api.post("/add")
    async def add(x: int, y: int, app: Annotated[Celery, Depends(celeriac_app)]) -> dict:
        result = await app.asend_task("proj.add", (x, y))  # or: await add_task.adelay(x, y)
        return {"task_id": result.id}

:func:`lifespan` connects the broker (and the result store, when there is one) as the web
app starts, one attempt each, so that the first request pays no connection; a server that
is down then is logged as a warning and the web app starts anyway (each publish retries
under its own policy, and answers an error if the broker stays away). It closes the app's
connections when the web app stops. It keeps the app in ``app.state.celeriac``,
where :func:`celeriac_app` finds it. Nothing here imports FastAPI: it is Starlette's
lifespan protocol and a function of Starlette's request, which FastAPI's ``Depends`` takes
(Starlette comes with FastAPI, and with celeriac's ``web`` extra).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request

from celeriac.exceptions import CeleriacError, ImproperlyConfigured

__all__ = ["STATE_KEY", "celeriac_app", "lifespan"]

logger = logging.getLogger("celeriac")

STATE_KEY = "celeriac"
"""The attribute of the web app's ``state`` that holds the celeriac app."""


def lifespan(
    app: Any, *, connect: bool = True
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that opens ``app`` with the web app.

    ``connect``: connect the broker and result store at start (the default); False
    leaves them to the first use.
    """

    @contextlib.asynccontextmanager
    async def run(web: Any) -> AsyncIterator[None]:
        setattr(web.state, STATE_KEY, app)
        if connect:
            await _connect(app)
        try:
            yield
        finally:
            await app.aclose()

    return run


async def _connect(app: Any) -> None:
    try:
        await app.aget_transport(first_try_only=True)
        if app.result_backend_url is not None:
            await app.aget_backend()
    except (OSError, CeleriacError) as exc:
        logger.warning("celeriac: not connected at start (%s); the first use retries", exc)
    else:
        logger.info("celeriac: %s connected for the web app", app.main or "app")


def celeriac_app(request: Request) -> Any:
    """The celeriac app of the request's web app (``Depends(celeriac_app)``)."""
    app = getattr(request.app.state, STATE_KEY, None)
    if app is None:
        raise ImproperlyConfigured(
            "no celeriac app on this web app: create it with "
            "FastAPI(lifespan=celeriac.contrib.fastapi.lifespan(app))"
        )
    return app
