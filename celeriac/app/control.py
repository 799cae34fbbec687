"""Celery's ``celery.app.control`` import path: the remote-control client (``app.control``)."""

from celeriac.control.client import Control, Inspect, flatten_reply

__all__ = ["Control", "Inspect", "flatten_reply"]
