"""What one dashboard holds: the app it watches, who may use it, its feed and its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celeriac.web.auth import Access
from celeriac.web.feed import Feed
from celeriac.web.history import History
from celeriac.web.inspections import Inspections
from celeriac.web.masking import DEFAULT_PATTERN, Masker
from celeriac.web.metrics import Metrics

__all__ = ["Dashboard"]


@dataclass
class Dashboard:
    """The state behind one web app (``request.app.state.dashboard``)."""

    app: Any
    access: Access
    feed: Feed
    metrics: Metrics

    @classmethod
    def build(
        cls,
        app: Any,
        *,
        basic_auth: str | None,
        address: str | None,
        max_tasks: int,
        history: History | None = None,
        token: str | None = None,
        mask_pattern: str | None = DEFAULT_PATTERN,
    ) -> Dashboard:
        """A dashboard of ``app``: the metrics count what the feed receives."""
        metrics = Metrics()
        masker = Masker(mask_pattern)
        feed = Feed(
            app,
            max_tasks=max_tasks,
            on_event=metrics.observe,
            history=history,
            masker=masker,
            inspections=Inspections(app, masker=masker),
        )
        metrics.bind(feed.state)
        return cls(app, Access.configure(basic_auth, address, token), feed, metrics)
