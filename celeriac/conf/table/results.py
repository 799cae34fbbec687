"""Settings of result storage: the result backend, PostgreSQL and Redis stores.

Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by
``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and
celeriac's defaults live here.
"""

from __future__ import annotations

import datetime as dt
import math

from celeriac.conf.model import NOT_SUPPORTED, Setting

__all__ = ["SETTINGS"]

SETTINGS = (
    Setting(
        "cache_backend",
        "string",
        None,
        "The cache server of `result_backend = 'cache'` (memcached), or `memory`.",
        status=NOT_SUPPORTED,
        reason=("celeriac has no memcached result backend (`cache+memory://` is its memory store)"),
        aliases=("CELERY_CACHE_BACKEND",),
    ),
    Setting(
        "cache_backend_options",
        "dict",
        {},
        "Options passed to the memcached client.",
        status=NOT_SUPPORTED,
        reason=("celeriac has no memcached result backend (`cache+memory://` is its memory store)"),
        aliases=("CELERY_CACHE_BACKEND_OPTIONS",),
    ),
    Setting(
        "redis_backend_use_ssl",
        "dict",
        None,
        (
            "TLS to a Redis result backend: a mapping of `ssl_cert_reqs`, `ssl_ca_certs`, "
            "`ssl_certfile`, `ssl_keyfile`; also makes a `redis://` URL use TLS."
        ),
        aliases=("CELERY_REDIS_BACKEND_USE_SSL",),
    ),
    Setting(
        "redis_db",
        "int",
        None,
        "The Redis database number, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the result backend as a URL in `result_backend`",
        aliases=("CELERY_REDIS_DB",),
    ),
    Setting(
        "redis_host",
        "string",
        None,
        "The Redis host, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the result backend as a URL in `result_backend`",
        aliases=("CELERY_REDIS_HOST",),
    ),
    Setting(
        "redis_max_connections",
        "int",
        None,
        ("The most connections a process keeps open to the Redis result backend; None: no limit."),
        default=20,
        differs=("bounded, so a burst of waiting clients cannot exhaust the server's connections"),
        aliases=("CELERY_REDIS_MAX_CONNECTIONS",),
    ),
    Setting(
        "redis_username",
        "string",
        None,
        "The Redis user name, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the result backend as a URL in `result_backend`",
        aliases=("CELERY_REDIS_USERNAME",),
    ),
    Setting(
        "redis_password",
        "string",
        None,
        "The Redis password, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the result backend as a URL in `result_backend`",
        aliases=("CELERY_REDIS_PASSWORD",),
    ),
    Setting(
        "redis_port",
        "int",
        None,
        "The Redis port, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the result backend as a URL in `result_backend`",
        aliases=("CELERY_REDIS_PORT",),
    ),
    Setting(
        "redis_socket_timeout",
        "float",
        120.0,
        ("Seconds a read or write on a Redis result-backend connection may take before it fails."),
        default=30.0,
        differs="a stuck server is noticed within 30 s",
        aliases=("CELERY_REDIS_SOCKET_TIMEOUT",),
    ),
    Setting(
        "redis_socket_connect_timeout",
        "float",
        None,
        (
            "Seconds to wait for a connection to the Redis result backend to open; None waits as"
            " long as the operating system does."
        ),
        default=5.0,
        differs="an unreachable server fails fast instead of hanging for minutes",
        aliases=("CELERY_REDIS_SOCKET_CONNECT_TIMEOUT",),
    ),
    Setting(
        "redis_retry_on_timeout",
        "bool",
        False,
        (
            "Retry a Redis result-backend operation that timed out (with the backend's retry "
            "policy) instead of raising at once."
        ),
        default=True,
        differs="timeouts are retried like the other connection errors",
        aliases=("CELERY_REDIS_RETRY_ON_TIMEOUT",),
    ),
    Setting(
        "redis_socket_keepalive",
        "bool",
        False,
        "Turn TCP keepalive on for connections to the Redis result backend.",
        default=True,
        differs="idle connections cut by a firewall are detected",
        aliases=("CELERY_REDIS_SOCKET_KEEPALIVE",),
    ),
    Setting(
        "result_backend",
        "string",
        None,
        (
            "Where results are stored: `redis://`, `db+postgresql://`, `rpc://`, `sqlite://`, "
            "`memory://`, or `django-db` (django-celery-results' tables, through its models; "
            "no chords). `django-cache` is refused at start. Also read from "
            "`CELERIAC_RESULT_BACKEND` or `CELERY_RESULT_BACKEND` when not set."
        ),
        differs=(
            "with no backend configured results go to the broker's own store when it can"
            " hold them (SQLite, Redis, memory) instead of nowhere; "
            "`task_ignore_result=True` turns them off"
        ),
        aliases=("CELERY_RESULT_BACKEND",),
    ),
    Setting(
        "result_cache_max",
        "int",
        -1,
        "How many ready results a client keeps in memory; -1 keeps none.",
        status=NOT_SUPPORTED,
        reason=(
            "results are not cached in the client: every read asks the store (Celery's "
            "default, -1, does the same)"
        ),
        aliases=("CELERY_MAX_CACHED_RESULTS",),
    ),
    Setting(
        "result_compression",
        "string",
        None,
        (
            "Compress stored results with `gzip` (`zlib`), `bzip2` or `lzma`, in Celery's format"
            " (readers need no setting to decompress). Applies to the Redis, SQLite and memory "
            "stores; the PostgreSQL backend stores results uncompressed, like Celery's database "
            "backend, and says so at start."
        ),
        aliases=("CELERY_RESULT_COMPRESSION",),
    ),
    Setting(
        "result_exchange",
        "string",
        "celeryresults",
        "The exchange results were published to by the old AMQP result backend.",
        status=NOT_SUPPORTED,
        reason=(
            "the exchange of Celery's removed `amqp://` result backend; `rpc://` replies "
            "go to the caller's own queue"
        ),
        aliases=("CELERY_RESULT_EXCHANGE",),
    ),
    Setting(
        "result_exchange_type",
        "string",
        "direct",
        "The type of that exchange.",
        status=NOT_SUPPORTED,
        reason=(
            "the exchange of Celery's removed `amqp://` result backend; `rpc://` replies "
            "go to the caller's own queue"
        ),
        aliases=("CELERY_RESULT_EXCHANGE_TYPE",),
    ),
    Setting(
        "result_expires",
        "float",
        dt.timedelta(seconds=86400),
        (
            "How long results are kept, in seconds or as a timedelta; None or 0 keeps them until"
            " forgotten. Redis keys get this TTL; SQL and SQLite rows older than this are "
            "deleted by `cleanup()` and a little at a time as new results are written."
        ),
        aliases=("CELERY_TASK_RESULT_EXPIRES",),
    ),
    Setting(
        "result_chord_expires",
        "float",
        None,
        "How long the state of an unfinished chord is kept.",
        status=NOT_SUPPORTED,
        reason="chord counters expire with `result_expires`",
        aliases=("CELERY_RESULT_CHORD_EXPIRES",),
    ),
    Setting(
        "result_failure_expires",
        "float",
        None,
        "A separate expiry for the results of failed tasks.",
        status=NOT_SUPPORTED,
        reason="failed results expire like the others, after `result_expires`",
        aliases=("CELERY_RESULT_FAILURE_EXPIRES",),
    ),
    Setting(
        "result_persistent",
        "bool",
        None,
        (
            "With `rpc://` results: send result messages as persistent (delivery mode 2), so "
            "they survive a broker restart. None or False: transient, as in Celery."
        ),
        aliases=("CELERY_RESULT_PERSISTENT",),
    ),
    Setting(
        "result_extended",
        "bool",
        False,
        (
            "Also store each task's name, arguments, keyword arguments, worker, retries and "
            "queue with its result, readable as `AsyncResult.name`, `.args`, `.kwargs`... "
            "(with `django-db`: django-celery-results' `task_name`, `task_args`, "
            "`task_kwargs` and `worker` columns)"
        ),
        aliases=("CELERY_RESULT_EXTENDED",),
    ),
    Setting(
        "result_serializer",
        "string",
        "json",
        (
            "How results are encoded in the store: `json`, `msgpack` or `pickle` (then list it "
            "in `result_accept_content` too)."
        ),
        aliases=("CELERY_RESULT_SERIALIZER",),
    ),
    Setting(
        "result_backend_transport_options",
        "dict",
        {},
        (
            "Options of the result store's engine: Redis `global_keyprefix`, `max_connections`, "
            "socket and TLS options, `cluster_hash_tag` (Redis Cluster); PostgreSQL `schema`, "
            "`listen`, `poll_interval`... (see the engine's page)."
        ),
        aliases=("CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS",),
    ),
    Setting(
        "result_chord_retry_interval",
        "float",
        1.0,
        "How often Celery's `chord_unlock` task checks whether a chord's header is done.",
        status=NOT_SUPPORTED,
        reason=(
            "no `chord_unlock` task polls chords: the last header task to finish publishes the body"
        ),
        aliases=("CELERY_RESULT_CHORD_RETRY_INTERVAL",),
    ),
    Setting(
        "result_chord_join_timeout",
        "float",
        3.0,
        "How long the worker that completes a chord waits to join the header's results.",
        status=NOT_SUPPORTED,
        reason=(
            "nothing is joined: each header result is collected atomically as its task "
            "ends, so the body is sent at once; the headers Celery joins (groups of "
            "chains ending in groups) are refused"
        ),
        aliases=("CELERY_RESULT_CHORD_JOIN_TIMEOUT",),
    ),
    Setting(
        "result_backend_max_sleep_between_retries_ms",
        "int",
        10000,
        "The longest pause between two retries of a failed result-store operation, ms.",
        status=NOT_SUPPORTED,
        reason=(
            "each engine retries connection errors with its own policy (`max_retries` and"
            " `retry_backoff_max` in the transport options)"
        ),
        aliases=("CELERY_RESULT_BACKEND_MAX_SLEEP_BETWEEN_RETRIES_MS",),
    ),
    Setting(
        "result_backend_max_retries",
        "float",
        math.inf,
        (
            "How many times a failed result-store operation is retried (with "
            "`result_backend_always_retry`)."
        ),
        aliases=("CELERY_RESULT_BACKEND_MAX_RETRIES",),
    ),
    Setting(
        "result_backend_base_sleep_between_retries_ms",
        "int",
        10,
        "The first pause before retrying a failed result-store operation, ms.",
        status=NOT_SUPPORTED,
        reason=(
            "each engine retries connection errors with its own policy (`max_retries` and"
            " `retry_backoff_max` in the transport options)"
        ),
        aliases=("CELERY_RESULT_BACKEND_BASE_SLEEP_BETWEEN_RETRIES_MS",),
    ),
    Setting(
        "result_backend_always_retry",
        "bool",
        False,
        (
            "Retry result-store operations up to `result_backend_max_retries` with no time "
            "limit. False (the default) still rides out an outage shorter than the lease "
            "(30 s): a failed write or read is retried that long, then raises `OperationalError`."
        ),
        aliases=("CELERY_RESULT_BACKEND_ALWAYS_RETRY",),
    ),
    Setting(
        "database_url",
        "string",
        None,
        ("The database of `result_backend = 'database'`, as an SQLAlchemy URL (PostgreSQL only)."),
        aliases=("CELERY_RESULT_DBURI",),
    ),
    Setting(
        "database_engine_options",
        "dict",
        {"pool_pre_ping": True, "pool_recycle": 3600},
        (
            "Keyword arguments for SQLAlchemy's `create_async_engine` (`pool_size`, "
            "`max_overflow`, `pool_recycle`, `echo`, `connect_args`...)."
        ),
        default={},
        differs=(
            "no `pool_pre_ping` round trip before every statement: a statement whose "
            "pooled connection turns out dead is run once more on a new one"
        ),
        aliases=("CELERY_RESULT_ENGINE_OPTIONS",),
    ),
    Setting(
        "database_engine_callback",
        "any",
        None,
        "A function called with each new SQLAlchemy engine, returning the engine to use.",
        status=NOT_SUPPORTED,
        reason="engines are created with `create_async_engine`; no callback is called",
        aliases=("DATABASE_ENGINE_CALLBACK",),
    ),
    Setting(
        "database_short_lived_sessions",
        "bool",
        False,
        (
            "Open a new database connection for every operation and close it after (no "
            "connection pool), for servers that drop idle connections."
        ),
        aliases=("CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",),
    ),
    Setting(
        "database_table_schemas",
        "dict",
        None,
        (
            "The PostgreSQL schemas of the result tables, `{'task': ..., 'group': ...}` "
            "(celeriac also reads `'beat'` for its schedule store). Missing schemas are created."
        ),
        aliases=("DATABASE_TABLE_SCHEMAS",),
    ),
    Setting(
        "database_table_names",
        "dict",
        None,
        (
            "Other names for the result tables, `{'task': 'celery_taskmeta', 'group': "
            "'celery_tasksetmeta'}` by default."
        ),
        aliases=("CELERY_RESULT_DB_TABLENAMES",),
    ),
    Setting(
        "database_create_tables_at_setup",
        "bool",
        True,
        (
            "Create the result tables when the backend connects (worker start); with False they "
            "are created by the first operation that needs them."
        ),
        aliases=("DATABASE_CREATE_TABLES_AT_SETUP",),
    ),
)
