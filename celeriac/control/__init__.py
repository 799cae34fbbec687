"""Remote control over Celery's broadcast mailbox (pidbox): client, worker side, wire format.

* :mod:`celeriac.control.wire`: the message format and names (``celery.pidbox``);
* :mod:`celeriac.control.fanout`: receiving broadcasts on each engine (``Subscription``);
* :mod:`celeriac.control.client`: ``app.control`` and ``app.control.inspect()``;
* :mod:`celeriac.control.panel`: the commands a worker answers;
* :mod:`celeriac.control.mailbox`: a worker's loop answering them.
"""

from __future__ import annotations

from celeriac.control.client import Control, Inspect, flatten_reply

__all__ = ["Control", "Inspect", "flatten_reply"]
