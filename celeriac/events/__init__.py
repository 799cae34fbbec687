"""Celery's events on celeriac: send, receive, and the cluster state built from them.

The same names as ``celery.events``: :class:`EventDispatcher`, :class:`EventReceiver`
(``app.events.Receiver``), :func:`Event`, :func:`group_from`, and
:class:`~celeriac.events.state.State` (``app.events.State``). Events travel on the
broker's event exchange (``celeryev``), as Celery's do: Flower and ``celery events``
see a celeriac worker, and celeriac's receivers see Celery workers.
"""

from __future__ import annotations

from celeriac.events.dispatcher import EventDispatcher
from celeriac.events.event import Event, group_from
from celeriac.events.receiver import EventReceiver
from celeriac.events.state import State

__all__ = ["Event", "EventDispatcher", "EventReceiver", "State", "group_from"]
