"""Settings of the worker.

Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by
``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and
celeriac's defaults live here.
"""

from __future__ import annotations

from celeriac.conf.model import CELERIAC_ONLY, NOT_SUPPORTED, Setting

__all__ = ["SETTINGS"]

SETTINGS = (
    Setting(
        "worker_agent",
        "string",
        None,
        "A class started in the worker to report to a monitoring service (`module:Class`).",
        status=NOT_SUPPORTED,
        reason="no monitoring agent is started",
        aliases=("CELERYD_AGENT",),
    ),
    Setting(
        "worker_autoscaler",
        "string",
        "celery.worker.autoscale:Autoscaler",
        "The class that grows and shrinks the pool with `--autoscale`.",
        status=NOT_SUPPORTED,
        reason=(
            "another autoscaler class cannot be loaded: `--autoscale MAX,MIN` uses celeriac's "
            "own (Celery's rule, `celeriac.worker.autoscale`)"
        ),
        aliases=("CELERYD_AUTOSCALER",),
    ),
    Setting(
        "worker_cancel_long_running_tasks_on_connection_loss",
        "bool",
        False,
        (
            "Cancel running late-acknowledged tasks when the broker connection is lost, since "
            "their messages will be redelivered."
        ),
        status=NOT_SUPPORTED,
        reason=(
            "running tasks keep running when the broker connection is lost; their "
            "messages stay leased"
        ),
        aliases=("CELERYD_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS",),
    ),
    Setting(
        "worker_soft_shutdown_timeout",
        "float",
        0.0,
        "Seconds a cold shutdown first waits, as a warm one, for running tasks.",
        status=NOT_SUPPORTED,
        reason="not supported yet: a warm shutdown waits for running tasks",
        aliases=("CELERYD_SOFT_SHUTDOWN_TIMEOUT",),
    ),
    Setting(
        "worker_enable_soft_shutdown_on_idle",
        "bool",
        False,
        "Apply the soft shutdown even when no task is running (so ETA tasks get requeued).",
        status=NOT_SUPPORTED,
        reason="not supported yet",
        aliases=("CELERYD_ENABLE_SOFT_SHUTDOWN_ON_IDLE",),
    ),
    Setting(
        "worker_concurrency",
        "any",
        None,
        "How many tasks run at once in the sync pool (`-c`); None: one per CPU.",
        aliases=("CELERYD_CONCURRENCY",),
    ),
    Setting(
        "worker_consumer",
        "string",
        "celery.worker.consumer:Consumer",
        "The worker's consumer class, as `module:Class`.",
        status=NOT_SUPPORTED,
        reason="the consumer is not pluggable",
        aliases=("CELERYD_CONSUMER",),
    ),
    Setting(
        "worker_direct",
        "bool",
        False,
        (
            "Give each worker its own queue `<hostname>.dq2`, bound to the `C.dq2` exchange, to "
            "send tasks to one worker (`celeriac.routing.worker_direct(hostname)` names it)."
        ),
        aliases=("CELERY_WORKER_DIRECT",),
    ),
    Setting(
        "worker_disable_rate_limits",
        "bool",
        False,
        "Ignore every task's rate limit.",
        aliases=("CELERY_DISABLE_RATE_LIMITS",),
    ),
    Setting(
        "worker_deduplicate_successful_tasks",
        "bool",
        False,
        (
            "Before running a redelivered late-acknowledged task, skip it if its result says it "
            "already succeeded."
        ),
        status=NOT_SUPPORTED,
        reason="not supported yet: a redelivered task that already succeeded runs again",
        aliases=("CELERYD_DEDUPLICATE_SUCCESSFUL_TASKS",),
    ),
    Setting(
        "worker_enable_remote_control",
        "bool",
        True,
        "Let the worker answer remote-control commands (`inspect`, `control`).",
        aliases=("CELERY_ENABLE_REMOTE_CONTROL",),
    ),
    Setting(
        "worker_hijack_root_logger",
        "bool",
        True,
        (
            "Let the worker and beat programs remove the root logger's handlers before adding "
            "their own (unless a `setup_logging` receiver configures logging)."
        ),
        aliases=("CELERYD_HIJACK_ROOT_LOGGER",),
    ),
    Setting(
        "worker_log_color",
        "bool",
        None,
        "Colour the worker's log lines; None: when writing to a terminal.",
        aliases=("CELERYD_LOG_COLOR",),
    ),
    Setting(
        "worker_log_datefmt",
        "string",
        None,
        "The date format of the worker's log lines.",
        aliases=("CELERYD_LOG_DATEFMT",),
    ),
    Setting(
        "worker_log_format",
        "string",
        "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
        "The format of the worker's log lines.",
        aliases=("CELERYD_LOG_FORMAT",),
    ),
    Setting(
        "worker_log_format_type",
        "string",
        CELERIAC_ONLY,
        (
            "How the worker and beat write their log lines: `text` (`worker_log_format` and "
            "`worker_task_log_format`) or `json` (one JSON object a line: time, level, logger, "
            "message, process, and the task's id and name, state and runtime where known). "
            "`--log-format` and the environment variable `CELERIAC_LOG_FORMAT` override it."
        ),
        default="text",
    ),
    Setting(
        "worker_lost_wait",
        "float",
        10.0,
        (
            "Seconds the worker waits for a result from a pool process that died before "
            "recording `WorkerLostError`."
        ),
        status=NOT_SUPPORTED,
        reason=(
            "not needed: what a pool process wrote before dying is read from its pipe at "
            "once, so there is nothing to wait for"
        ),
        aliases=("CELERYD_WORKER_LOST_WAIT",),
    ),
    Setting(
        "worker_max_memory_per_child",
        "int",
        None,
        (
            "Replace a pool process (or, with `-P slots`, a slot's process) once its "
            "peak resident memory exceeds this many kilobytes, after the task that passed it."
        ),
        aliases=("CELERYD_MAX_MEMORY_PER_CHILD",),
    ),
    Setting(
        "worker_max_tasks_per_child",
        "int",
        None,
        (
            "Replace a pool process (or, with `-P slots`, a slot's process) after it "
            "has run this many tasks."
        ),
        aliases=("CELERYD_MAX_TASKS_PER_CHILD",),
    ),
    Setting(
        "worker_pool",
        "string",
        "prefork",
        (
            "The pool that runs sync tasks: `prefork` (a consumer feeding forked processes, "
            "Celery's pool), `threads`, `solo`, or `slots` (`celeriac worker` only: `-c` "
            "supervised processes that each run their tasks in-process, with prefork's "
            "isolation; docs/worker.md). `async def` tasks run on the worker's event loop "
            "whatever the pool."
        ),
        aliases=("CELERYD_POOL",),
    ),
    Setting(
        "worker_pool_putlocks",
        "bool",
        True,
        "Make the pool wait for a free process before taking the next job.",
        status=NOT_SUPPORTED,
        reason="jobs are handed to pool processes without locks",
        aliases=("CELERYD_POOL_PUTLOCKS",),
    ),
    Setting(
        "worker_pool_restarts",
        "bool",
        False,
        "Allow the `pool_restart` remote-control command.",
        status=NOT_SUPPORTED,
        reason="not supported yet: no `pool_restart` remote command",
        aliases=("CELERYD_POOL_RESTARTS",),
    ),
    Setting(
        "worker_pool_start_method",
        "string",
        "fork",
        "How pool processes are started: `fork`, `spawn` or `forkserver`.",
        status=NOT_SUPPORTED,
        reason="pool processes are always forked",
        aliases=("CELERYD_POOL_START_METHOD",),
    ),
    Setting(
        "worker_proc_alive_timeout",
        "float",
        4.0,
        "Seconds to wait for a new pool process to say it is ready.",
        status=NOT_SUPPORTED,
        reason="a pool process that does not start is replaced as soon as it exits",
        aliases=("CELERYD_PROC_ALIVE_TIMEOUT",),
    ),
    Setting(
        "worker_prefetch_multiplier",
        "int",
        4,
        (
            "How many messages a worker holds per pool slot, running or waiting (`--prefetch-"
            "multiplier`). Left at its default, the window adapts to how long tasks run: "
            "about 50 ms of work per slot, from this many up to 64 per slot (4,096 in all) "
            "while tasks are short, back to this many for tasks of 12.5 ms or more or after "
            "50 ms with no task finished. Set it (or `worker_disable_prefetch`) for a fixed "
            "window, as in Celery."
        ),
        aliases=("CELERYD_PREFETCH_MULTIPLIER",),
    ),
    Setting(
        "worker_eta_task_limit",
        "int",
        None,
        "The most ETA tasks a worker holds in memory.",
        status=NOT_SUPPORTED,
        reason=(
            "not needed: ETA tasks stay in the broker until nearly due (`worker_eta_hold_seconds`)"
        ),
        aliases=("CELERYD_ETA_TASK_LIMIT",),
    ),
    Setting(
        "worker_enable_prefetch_count_reduction",
        "bool",
        True,
        (
            "After a broker connection loss, lower the prefetch count while tasks held before "
            "the loss finish."
        ),
        status=NOT_SUPPORTED,
        reason="the prefetch window is not reduced after a connection loss",
        aliases=("CELERYD_ENABLE_PREFETCH_COUNT_REDUCTION",),
    ),
    Setting(
        "worker_disable_prefetch",
        "bool",
        False,
        "Fetch a message only when a pool slot is free (the prefetch multiplier becomes 1).",
        aliases=("CELERYD_DISABLE_PREFETCH",),
    ),
    Setting(
        "worker_redirect_stdouts",
        "bool",
        True,
        "Send what tasks print to the worker's log.",
        status=NOT_SUPPORTED,
        reason="tasks' standard output and error are not redirected to the log",
        aliases=("CELERY_REDIRECT_STDOUTS",),
    ),
    Setting(
        "worker_redirect_stdouts_level",
        "string",
        "WARNING",
        "The log level of redirected output.",
        status=NOT_SUPPORTED,
        reason="tasks' standard output and error are not redirected to the log",
        aliases=("CELERY_REDIRECT_STDOUTS_LEVEL",),
    ),
    Setting(
        "worker_send_task_events",
        "bool",
        False,
        "Send task events (`-E`) that monitors such as Flower read.",
        aliases=("CELERY_SEND_EVENTS",),
    ),
    Setting(
        "worker_state_db",
        "string",
        None,
        "A file where the worker keeps its revoked task ids across restarts (`--statedb`).",
        status=NOT_SUPPORTED,
        reason="not needed: revokes are persisted in the broker",
        aliases=("CELERYD_STATE_DB",),
    ),
    Setting(
        "worker_task_log_datefmt",
        "string",
        None,
        "The date format of log lines written from tasks.",
        aliases=("CELERYD_TASK_LOG_DATEFMT",),
    ),
    Setting(
        "worker_task_log_format",
        "string",
        "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s",
        "The format of log lines written from tasks (`%(task_name)s`, `%(task_id)s`).",
        aliases=("CELERYD_TASK_LOG_FORMAT",),
    ),
    Setting(
        "worker_timer",
        "string",
        None,
        "The timer class of the worker.",
        status=NOT_SUPPORTED,
        reason="timers run on the worker's event loop",
        aliases=("CELERYD_TIMER",),
    ),
    Setting(
        "worker_timer_precision",
        "float",
        1.0,
        "How late a timer may fire, in seconds.",
        status=NOT_SUPPORTED,
        reason="timers run on the worker's event loop",
        aliases=("CELERYD_TIMER_PRECISION",),
    ),
    Setting(
        "worker_detect_quorum_queues",
        "bool",
        True,
        "Detect quorum queues and switch off the global QoS they do not support.",
        differs=(
            "nothing to detect: celeriac's prefetch is always per consumer (never global "
            "QoS), so quorum queues work whatever the value"
        ),
        aliases=("CELERYD_DETECT_QUORUM_QUEUES",),
    ),
    Setting(
        "worker_eta_hold_seconds",
        "float",
        CELERIAC_ONLY,
        (
            "How close to its ETA a countdown or ETA task must be for a worker to hold it, "
            "seconds; a worker moves one due later into the broker's delayed store of its "
            "queue until then, so worker memory stays bounded."
        ),
        default=2.0,
    ),
)
