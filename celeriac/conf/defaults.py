"""Every setting celeriac reads, with its default, under Celery's name.

Where our default differs from Celery's, the comment says so and names the value
that restores Celery's behaviour.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DEFAULTS", "OLD_NAMES"]

DEFAULTS: dict[str, Any] = {
    # broker and results
    "broker_url": None,  # Celery: amqp://localhost; celeriac: embedded SQLite (sqlite://)
    "broker_transport_options": {},
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": 100,
    "result_backend": None,  # Celery: disabled; celeriac: the broker's store if it can hold them
    "result_backend_transport_options": {},
    "result_expires": 86400,
    "database_engine_options": {},  # PostgreSQL backend and beat store (docs/sql.md)
    "database_table_schemas": {},
    "result_extended": False,
    "result_serializer": "json",
    "result_accept_content": None,
    "result_compression": None,
    # serialization
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_compression": None,
    # task execution
    "task_acks_late": True,  # Celery: False (ack on receipt)
    "task_acks_on_failure_or_timeout": True,
    "task_reject_on_worker_lost": None,
    "task_track_started": True,  # Celery: False
    "task_ignore_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_rate_limit": None,
    "task_default_retry_delay": 180,
    "task_max_retries": 3,
    "task_annotations": None,
    "task_protocol": 2,
    "task_send_sent_event": False,
    "task_default_priority": None,
    "task_queue_max_priority": None,
    # routing
    "task_default_queue": "celery",
    "task_default_exchange": None,  # None: same as task_default_queue
    "task_default_exchange_type": "direct",
    "task_default_routing_key": None,  # None: same as task_default_queue
    "task_default_delivery_mode": "persistent",
    "task_queues": None,
    "task_routes": None,
    "task_create_missing_queues": True,
    # worker
    "worker_concurrency": None,  # None: number of CPUs
    "worker_prefetch_multiplier": 4,
    "worker_max_tasks_per_child": None,
    "worker_pool": "prefork",
    "worker_send_task_events": False,
    "worker_disable_rate_limits": False,
    "worker_hijack_root_logger": True,
    "worker_log_format": "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    "worker_task_log_format": (
        "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
    ),
    "worker_lost_wait": 10.0,
    "worker_eta_hold_seconds": 2.0,  # celeriac: ETAs further away stay in the broker
    # time and beat
    "timezone": None,  # None: UTC
    "enable_utc": True,
    "beat_schedule": {},
    "beat_max_loop_interval": 5,
    "beat_schedule_store": None,
    "beat_lease_seconds": 4.0,  # celeriac: leader lease, so several beats send each tick once
    "beat_lease_renew_interval": None,  # None: a quarter of the lease
    # app
    "imports": (),
    "include": (),
}

# Celery 3-style uppercase names still found in settings files, mapped to the new ones.
OLD_NAMES: dict[str, str] = {
    "BROKER_URL": "broker_url",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_RESULT_ENGINE_OPTIONS": "database_engine_options",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_DEFAULT_EXCHANGE": "task_default_exchange",
    "CELERY_DEFAULT_EXCHANGE_TYPE": "task_default_exchange_type",
    "CELERY_DEFAULT_ROUTING_KEY": "task_default_routing_key",
    "CELERY_QUEUES": "task_queues",
    "CELERY_ROUTES": "task_routes",
    "CELERY_ANNOTATIONS": "task_annotations",
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_POOL": "worker_pool",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_TIMEZONE": "timezone",
    "CELERY_ENABLE_UTC": "enable_utc",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
}


def default_concurrency() -> int:
    """Celery's default: one slot per CPU."""
    return os.cpu_count() or 1
