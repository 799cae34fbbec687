"""The dashboard: pages, Flower's HTTP API, Prometheus metrics and a live event stream.

``create_app(app)`` returns an ASGI application (Starlette) that watches ``app``'s
cluster through its events; ``celeriac -A proj web`` serves it with uvicorn. Needs the
``web`` extra: ``pip install 'celeriac[web]'``. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from celeriac.web.application import create_app

__all__ = ["create_app"]
