"""``create_app(app)``: the dashboard as an ASGI application (Starlette).

The returned app serves the pages, the API, ``/metrics`` and the static files. Its
event receiver starts with the ASGI lifespan (``uvicorn`` sends it), or on the first
request when the dashboard is mounted in another app that does not pass the lifespan on
(Starlette's and FastAPI's ``Mount``), and stops at shutdown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from celeriac.web import (
    api,
    control,
    deadletters,
    openapi,
    pages,
    queues,
    schedules,
    workflows,
)
from celeriac.web.auth import AuthMiddleware
from celeriac.web.dashboard import Dashboard
from celeriac.web.history import History
from celeriac.web.masking import DEFAULT_PATTERN

__all__ = ["STATIC", "StartFeed", "create_app"]

STATIC = Path(__file__).with_name("static")


def create_app(
    app: Any,
    *,
    basic_auth: str | None = None,
    address: str | None = None,
    max_tasks: int = 10000,
    history: str | Path | History | None = None,
    token: str | None = None,
    mask_pattern: str | None = DEFAULT_PATTERN,
) -> Starlette:
    """The dashboard of the celeriac (or Celery-configured) ``app``.

    ``basic_auth`` is ``user:pass[,user2:pass2]`` (default: ``CELERIAC_WEB_BASIC_AUTH``);
    ``address`` the address the server binds (None when mounted: then each request's
    server address tells whether actions without credentials are allowed);
    ``max_tasks`` how many tasks the dashboard keeps in memory; ``history`` the SQLite
    file (or a :class:`~celeriac.web.history.History`, such as
    :func:`~celeriac.web.history.open_history` gives: in the app's SQL result database when
    it has one) that keeps them across restarts (None: memory only); ``token`` bearer
    tokens, comma-separated, that pass as well as ``basic_auth`` (default:
    ``CELERIAC_WEB_TOKEN``); ``mask_pattern`` the key names whose values are masked in task
    arguments and results (see :mod:`celeriac.web.masking`; empty: none).
    """
    if history is not None and not isinstance(history, History):
        history = History(history)
    dashboard = Dashboard.build(
        app,
        basic_auth=basic_auth,
        address=address,
        max_tasks=max_tasks,
        history=history,
        token=token,
        mask_pattern=mask_pattern,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        dashboard.feed.start()
        try:
            yield
        finally:
            await dashboard.feed.stop()

    routes: list[BaseRoute] = [*api.routes(), *control.routes(), *deadletters.routes()]
    routes += queues.routes()
    routes += [*schedules.routes(), *workflows.routes(), *openapi.routes()]
    routes += pages.routes()
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    web = Starlette(
        routes=routes,
        middleware=[
            Middleware(AuthMiddleware, access=dashboard.access),
            Middleware(StartFeed, feed=dashboard.feed),
        ],
        exception_handlers={api.ApiError: _api_error},
        lifespan=lifespan,
    )
    web.state.dashboard = dashboard
    return web


async def _api_error(request: Request, exc: Exception) -> Response:
    del request
    assert isinstance(exc, api.ApiError)
    return api.error_response(exc)


class StartFeed:
    """Starts the feed on the first request (for a mounted dashboard without lifespan)."""

    def __init__(self, app: Callable[..., Awaitable[None]], feed: Any) -> None:
        self.app = app
        self.feed = feed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.feed.start()
        await self.app(scope, receive, send)
