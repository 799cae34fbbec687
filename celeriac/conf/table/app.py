"""Settings of the application: content types, imports, time zone, and beat.

Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by
``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and
celeriac's defaults live here.
"""

from __future__ import annotations

from celeriac.conf.model import CELERIAC_ONLY, NOT_SUPPORTED, Setting

__all__ = ["SETTINGS"]

SETTINGS = (
    Setting(
        "accept_content",
        "list",
        ("json",),
        (
            "Content types a worker accepts in task messages, as serializer names (`json`, "
            "`msgpack`, `pickle`) or MIME types. A message of any other type is refused and "
            "moved to the dead-letter store; list `pickle` only when every producer is trusted."
        ),
        aliases=("CELERY_ACCEPT_CONTENT",),
    ),
    Setting(
        "result_accept_content",
        "list",
        None,
        (
            "Content types accepted when results are read; None means the same as "
            "`accept_content`. A result stored with a serializer that is not listed cannot be "
            "read (`ContentDisallowed`), as in Celery."
        ),
        aliases=("RESULT_ACCEPT_CONTENT",),
    ),
    Setting(
        "enable_utc",
        "bool",
        True,
        (
            "Keep times in UTC. With False and no `timezone`, crontab schedules follow the "
            "host's local time zone."
        ),
        aliases=("ENABLE_UTC",),
    ),
    Setting(
        "imports",
        "tuple",
        (),
        (
            "Modules the worker and beat import at start-up, so that the tasks they define are "
            "registered."
        ),
        aliases=("CELERY_IMPORTS",),
    ),
    Setting(
        "include",
        "tuple",
        (),
        ("More modules to import at start-up, after `imports`; `Celery(include=[...])` sets it."),
        aliases=("CELERY_INCLUDE",),
    ),
    Setting(
        "timezone",
        "string",
        None,
        (
            "The time zone crontab schedules are evaluated in, as an IANA name such as "
            "`Europe/Paris`. None: UTC, or the host's zone when `enable_utc` is False."
        ),
        aliases=("CELERY_TIMEZONE",),
    ),
    Setting(
        "beat_enable_remote_control",
        "bool",
        False,
        "Let beat answer remote-control commands sent to it.",
        status=NOT_SUPPORTED,
        reason="beat has no remote-control channel",
        aliases=("CELERYBEAT_ENABLE_REMOTE_CONTROL",),
    ),
    Setting(
        "beat_remote_control_max_tick_age",
        "float",
        None,
        (
            "How old beat's last tick may be, in seconds, before beat reports itself unhealthy "
            "over remote control."
        ),
        status=NOT_SUPPORTED,
        reason="beat has no remote-control channel",
        aliases=("CELERYBEAT_REMOTE_CONTROL_MAX_TICK_AGE",),
    ),
    Setting(
        "beat_max_loop_interval",
        "float",
        0,
        (
            "The longest beat sleeps between two looks at its schedule, in seconds; 0 means the "
            "default."
        ),
        default=5,
        differs=(
            "beat also renews its leader lease in this loop, so a short sleep lets "
            "another beat take over within seconds (Celery's scheduler sleeps up to 300 "
            "s)"
        ),
        aliases=("CELERYBEAT_MAX_LOOP_INTERVAL",),
    ),
    Setting(
        "beat_schedule",
        "dict",
        {},
        (
            "The periodic tasks: entry names mapped to `{'task': name, 'schedule': seconds, "
            "timedelta, crontab or solar, 'args': ..., 'kwargs': ..., 'options': {...}}`."
        ),
        aliases=("CELERYBEAT_SCHEDULE",),
    ),
    Setting(
        "beat_scheduler",
        "string",
        "celery.beat:PersistentScheduler",
        (
            "The scheduler class beat runs, as `module:Class`: Celery's default means "
            "celeriac's leased scheduler; `django_celery_beat.schedulers:DatabaseScheduler` "
            "(or `django`) means the leased scheduler with its entries read from "
            "django-celery-beat's tables; another class with Celery's interface (`tick()`) "
            "is run as Celery's beat runs it, without the lease."
        ),
        aliases=("CELERYBEAT_SCHEDULER",),
    ),
    Setting(
        "beat_schedule_filename",
        "string",
        "celerybeat-schedule",
        "The file Celery's default scheduler keeps the last run times in.",
        status=NOT_SUPPORTED,
        reason=(
            "beat keeps its state in the schedule store (`beat_schedule_store`, else the "
            "broker), not in a shelve file; `beat -s` takes a store URL or a file path"
        ),
        aliases=("CELERYBEAT_SCHEDULE_FILENAME",),
    ),
    Setting(
        "beat_sync_every",
        "int",
        0,
        (
            "How many sent tasks beat lets pass before writing its schedule state; 0 means a "
            "timer decides."
        ),
        status=NOT_SUPPORTED,
        reason="not needed: each tick's claim is written to the store at once",
        aliases=("CELERYBEAT_SYNC_EVERY",),
    ),
    Setting(
        "beat_cron_starting_deadline",
        "int",
        None,
        (
            "How many seconds late a missed crontab tick may still be sent when beat starts; "
            "None sends it however late."
        ),
        status=NOT_SUPPORTED,
        reason=(
            "not supported yet: a crontab tick missed while no beat ran is sent once when"
            " beat starts"
        ),
        aliases=("CELERYBEAT_CRON_STARTING_DEADLINE",),
    ),
    Setting(
        "beat_schedule_store",
        "string",
        CELERIAC_ONLY,
        (
            "Where beat keeps its state (leader lease, last runs): a `sqlite://`, `redis://`, "
            "`postgresql://` or `memory://` URL. None: the broker when it can hold it, else the "
            "result backend, else a local SQLite file."
        ),
        default=None,
    ),
    Setting(
        "beat_lease_seconds",
        "float",
        CELERIAC_ONLY,
        (
            "How long beat's leader lease lasts, seconds; another beat takes over within this "
            "time after the leader dies."
        ),
        default=4.0,
    ),
    Setting(
        "beat_lease_renew_interval",
        "float",
        CELERIAC_ONLY,
        (
            "How often the leader renews its lease, seconds; None: a quarter of "
            "`beat_lease_seconds`."
        ),
        default=None,
    ),
)
