"""Settings of tasks: publishing, routing, execution and acknowledgement.

Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by
``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and
celeriac's defaults live here.
"""

from __future__ import annotations

from celeriac.conf.model import CELERIAC_ONLY, NOT_SUPPORTED, Setting

__all__ = ["SETTINGS"]

SETTINGS = (
    Setting(
        "task_acks_late",
        "bool",
        False,
        (
            "Acknowledge a task message after the task has finished instead of when it is "
            "received, so a task whose worker dies is delivered again."
        ),
        default=True,
        differs=(
            "nothing is lost when a worker is killed; `task_acks_late=False` restores "
            "acknowledgement on receipt"
        ),
        aliases=("CELERY_ACKS_LATE",),
    ),
    Setting(
        "task_acks_on_failure_or_timeout",
        "bool",
        True,
        (
            "With late acknowledgement: acknowledge the message of a task that failed or hit its"
            " hard time limit. False rejects a failed task's message without requeueing it "
            "and requeues a timed-out one. Superseded by `task_acks_on_failure` and"
            " `task_acks_on_timeout`."
        ),
        aliases=("CELERY_ACKS_ON_FAILURE_OR_TIMEOUT",),
    ),
    Setting(
        "task_acks_on_failure",
        "bool",
        None,
        (
            "With late acknowledgement: acknowledge the message of a task that failed; False "
            "rejects it without requeueing (RabbitMQ drops it, or routes it to the queue's "
            "dead-letter exchange). None: `task_acks_on_failure_or_timeout`."
        ),
        aliases=("CELERY_ACKS_ON_FAILURE",),
    ),
    Setting(
        "task_acks_on_timeout",
        "bool",
        None,
        (
            "With late acknowledgement: acknowledge the message of a task killed by its hard "
            "time limit; False requeues it, so it runs again. None: "
            "`task_acks_on_failure_or_timeout`."
        ),
        aliases=("CELERY_ACKS_ON_TIMEOUT",),
    ),
    Setting(
        "task_always_eager",
        "bool",
        False,
        (
            "Run tasks in the calling process when they are sent (`delay`, `apply_async`) "
            "instead of publishing them; for tests."
        ),
        aliases=("CELERY_ALWAYS_EAGER",),
    ),
    Setting(
        "task_annotations",
        "any",
        None,
        (
            "Attributes to set on tasks, by task name or `'*'` for all: a mapping such as "
            "`{'tasks.add': {'rate_limit': '10/s'}}`, an object with `annotate(task)`, a list of"
            " these, or an import path. Keys beginning with `@` wrap the named method "
            "(`'@__call__'`)."
        ),
        aliases=("CELERY_ANNOTATIONS",),
    ),
    Setting(
        "task_compression",
        "string",
        None,
        "Compress task message bodies: `gzip` (`zlib`), `bzip2` or `lzma`.",
        aliases=("CELERY_MESSAGE_COMPRESSION",),
    ),
    Setting(
        "task_create_missing_queues",
        "bool",
        True,
        (
            "Declare a queue that is not in `task_queues` when a task is sent to it or a worker "
            "consumes it. False: sending to such a queue raises `QueueNotFound`, and so does "
            "starting a worker with `-Q` naming one."
        ),
        aliases=("CELERY_CREATE_MISSING_QUEUES",),
    ),
    Setting(
        "task_create_missing_queue_type",
        "string",
        "classic",
        "The RabbitMQ queue type (`classic` or `quorum`) of queues created on demand.",
        aliases=("CELERY_CREATE_MISSING_QUEUE_TYPE",),
    ),
    Setting(
        "task_create_missing_queue_exchange_type",
        "string",
        None,
        (
            "The type of the exchange (named as the queue) that a queue created on demand is "
            "bound to; None: `direct`."
        ),
        aliases=("CELERY_CREATE_MISSING_QUEUE_EXCHANGE_TYPE",),
    ),
    Setting(
        "task_inherit_parent_priority",
        "bool",
        False,
        "Give tasks sent from inside a task the priority of that task.",
        status=NOT_SUPPORTED,
        reason="not supported yet: a task sent from a task gets the default priority",
        aliases=("CELERY_INHERIT_PARENT_PRIORITY",),
    ),
    Setting(
        "task_default_delivery_mode",
        "string",
        2,
        (
            "How task messages are sent on RabbitMQ: `persistent` (2, written to disk) or "
            "`transient` (1, faster, lost if the broker restarts). Also the `delivery_mode` "
            "option of `apply_async`. Other brokers keep every message."
        ),
        aliases=("CELERY_DEFAULT_DELIVERY_MODE",),
    ),
    Setting(
        "task_default_queue",
        "string",
        "celery",
        (
            "The queue of tasks that nothing else routes, and what a worker consumes without "
            "`-Q` (when `task_queues` is not set)."
        ),
        aliases=("CELERY_DEFAULT_QUEUE",),
    ),
    Setting(
        "task_default_queue_type",
        "string",
        "classic",
        (
            "The RabbitMQ queue type (`classic` or `quorum`) of the default queue when "
            "`task_queues` is not set; for other queues give `queue_arguments="
            "{'x-queue-type': 'quorum'}`."
        ),
        aliases=("CELERY_DEFAULT_QUEUE_TYPE",),
    ),
    Setting(
        "task_default_exchange",
        "string",
        None,
        "The exchange of the default queue; None: the queue's name.",
        aliases=("CELERY_DEFAULT_EXCHANGE",),
    ),
    Setting(
        "task_default_exchange_type",
        "string",
        "direct",
        "The type of exchanges declared for queues (`direct`, `topic`, `fanout`).",
        aliases=("CELERY_DEFAULT_EXCHANGE_TYPE",),
    ),
    Setting(
        "task_default_routing_key",
        "string",
        None,
        "The routing key of the default queue; None: the queue's name.",
        aliases=("CELERY_DEFAULT_ROUTING_KEY",),
    ),
    Setting(
        "task_default_rate_limit",
        "string",
        None,
        (
            "A rate limit for every task without one, per worker (`'10/s'`, `'100/m'`, "
            "`'1000/h'`, or tasks per second)."
        ),
        aliases=("CELERY_DEFAULT_RATE_LIMIT",),
    ),
    Setting(
        "task_default_priority",
        "string",
        None,
        (
            "The priority of tasks sent without one (0-9 on Redis, 0-255 on RabbitMQ queues with"
            " `x-max-priority`)."
        ),
        aliases=("CELERY_DEFAULT_PRIORITY",),
    ),
    Setting(
        "task_eager_propagates",
        "bool",
        False,
        (
            "Let `apply()` and eager tasks re-raise the task's exception instead of returning a "
            "failed result."
        ),
        aliases=("CELERY_EAGER_PROPAGATES_EXCEPTIONS",),
    ),
    Setting(
        "task_ignore_result",
        "bool",
        False,
        "Store no result for tasks that do not set `ignore_result` themselves.",
        aliases=("CELERY_IGNORE_RESULT",),
    ),
    Setting(
        "task_store_eager_result",
        "bool",
        False,
        "Also store the results of `apply()` and eager tasks in the result backend.",
        aliases=("CELERY_STORE_EAGER_RESULT",),
    ),
    Setting(
        "task_protocol",
        "int",
        2,
        (
            "The task message format sent. Only 2 (Celery 4 and later) is sent; 1 is refused at "
            "start with an error. Workers read both."
        ),
        aliases=("CELERY_TASK_PROTOCOL",),
    ),
    Setting(
        "task_publish_retry",
        "bool",
        True,
        (
            "Retry sending a task when the broker connection fails (then raise "
            "`OperationalError`); `apply_async(retry=...)` overrides it per call."
        ),
        aliases=("CELERY_TASK_PUBLISH_RETRY",),
    ),
    Setting(
        "task_publish_retry_policy",
        "dict",
        {"max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2},
        (
            "How sending a task is retried: `max_retries`, `interval_start`, `interval_step`, "
            "`interval_max` (waits as kombu's); `apply_async(retry_policy=...)` overrides keys. "
            "Each attempt itself rides out an outage of up to the lease (30 s)."
        ),
        aliases=("CELERY_TASK_PUBLISH_RETRY_POLICY",),
    ),
    Setting(
        "task_queues",
        "dict",
        None,
        (
            "The queues a worker consumes without `-Q`, and how they are declared: `Queue` "
            "objects (celeriac's or kombu's) with their exchanges, routing keys and arguments."
        ),
        aliases=("CELERY_QUEUES",),
    ),
    Setting(
        "task_queue_max_priority",
        "int",
        None,
        (
            "The `x-max-priority` argument of queues declared without one, enabling priorities "
            "on RabbitMQ."
        ),
        aliases=("CELERY_QUEUE_MAX_PRIORITY",),
    ),
    Setting(
        "task_reject_on_worker_lost",
        "bool",
        None,
        (
            "With late acknowledgement: requeue the message of a task whose pool process died, "
            "instead of recording `WorkerLostError`. The task may then run twice."
        ),
        aliases=("CELERY_REJECT_ON_WORKER_LOST",),
    ),
    Setting(
        "task_retry_on_worker_lost",
        "bool",
        False,
        "Retry a task whose pool process died, counting it against `max_retries`.",
        status=NOT_SUPPORTED,
        reason=(
            "not supported yet: a task whose pool process died fails with "
            "`WorkerLostError` (or is requeued with `task_reject_on_worker_lost`)"
        ),
        aliases=("CELERY_RETRY_ON_WORKER_LOST",),
    ),
    Setting(
        "task_remote_tracebacks",
        "bool",
        False,
        "Re-raise task errors with the worker's traceback attached (needs tblib).",
        status=NOT_SUPPORTED,
        reason=(
            "needs tblib: failures carry the remote traceback as text in `AsyncResult.traceback`"
        ),
        aliases=("CELERY_REMOTE_TRACEBACKS",),
    ),
    Setting(
        "task_repr_maxlevels",
        "int",
        3,
        "How deep nested arguments are shown in `argsrepr`/`kwargsrepr` and logs.",
        status=NOT_SUPPORTED,
        reason="`argsrepr` and `kwargsrepr` are cut by length, not by nesting depth",
        aliases=("CELERY_REPR_MAXLEVELS",),
    ),
    Setting(
        "task_routes",
        "any",
        None,
        (
            "Where tasks go: a mapping of task names or glob patterns to `{'queue': ...}` (or a "
            "queue name), a router function or an import path, or a list of these, tried in "
            "order."
        ),
        aliases=("CELERY_ROUTES",),
    ),
    Setting(
        "task_send_sent_event",
        "bool",
        False,
        "Send a `task-sent` event for each published task.",
        aliases=("CELERY_SEND_TASK_SENT_EVENT",),
    ),
    Setting(
        "task_serializer",
        "string",
        "json",
        "How task arguments are encoded: `json`, `msgpack` or `pickle`.",
        aliases=("CELERY_TASK_SERIALIZER",),
    ),
    Setting(
        "task_soft_time_limit",
        "float",
        None,
        (
            "Seconds after which `SoftTimeLimitExceeded` is raised inside a running task, so it "
            "can clean up."
        ),
        aliases=("CELERYD_TASK_SOFT_TIME_LIMIT",),
    ),
    Setting(
        "task_time_limit",
        "float",
        None,
        (
            "Seconds after which a running task is killed (its pool process is replaced) and "
            "fails with `TimeLimitExceeded`."
        ),
        aliases=("CELERYD_TASK_TIME_LIMIT",),
    ),
    Setting(
        "task_store_errors_even_if_ignored",
        "bool",
        False,
        "Store failures (and retries) of tasks whose results are ignored.",
        aliases=("CELERY_STORE_ERRORS_EVEN_IF_IGNORED",),
    ),
    Setting(
        "task_track_started",
        "bool",
        False,
        "Record a `STARTED` state when a task begins to run.",
        default=True,
        differs=(
            "long tasks show that they are running; tasks that finish within 50 ms go "
            "straight to their final state"
        ),
        aliases=("CELERY_TRACK_STARTED",),
    ),
    Setting(
        "task_allow_error_cb_on_chord_header",
        "bool",
        False,
        "Let errbacks linked to a chord also run for each failing header task.",
        status=NOT_SUPPORTED,
        reason="errbacks linked to a chord run once, on the chord's failure",
        aliases=("CELERY_ALLOW_ERROR_CB_ON_CHORD_HEADER",),
    ),
    Setting(
        "task_message_max_size",
        "int",
        CELERIAC_ONLY,
        (
            "The largest task message body a worker decodes, in bytes, after decompression "
            "(0: no limit). A larger one is dead-lettered with the reason in the log, and a "
            'compressed body is never inflated beyond this size, so a small "zip bomb" '
            "cannot take the worker's memory."
        ),
        default=64 * 1024 * 1024,
    ),
)
