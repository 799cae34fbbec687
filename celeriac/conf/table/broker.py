"""Settings of the broker connection.

Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by
``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and
celeriac's defaults live here.
"""

from __future__ import annotations

from celeriac.conf.model import CELERIAC_ONLY, NOT_SUPPORTED, Setting

__all__ = ["SETTINGS"]

SETTINGS = (
    Setting(
        "broker_url",
        "string",
        None,
        (
            "Where the broker is: `redis://`, `rediss://`, `sentinel://`, `amqp://`, `amqps://`,"
            " `sqlite://`, `memory://`. Also read from `CELERIAC_BROKER_URL` or "
            "`CELERY_BROKER_URL` when not set."
        ),
        differs=(
            "with no broker configured celeriac uses an embedded SQLite file "
            "(`./celeriac.sqlite`) instead of `amqp://localhost`, so nothing has to be "
            "installed to start"
        ),
        aliases=("BROKER_URL",),
    ),
    Setting(
        "broker_read_url",
        "string",
        None,
        "A separate broker URL for consuming connections.",
        status=NOT_SUPPORTED,
        reason="one broker URL serves both consuming and publishing",
        aliases=("BROKER_READ_URL",),
    ),
    Setting(
        "broker_write_url",
        "string",
        None,
        "A separate broker URL for publishing connections.",
        status=NOT_SUPPORTED,
        reason="one broker URL serves both consuming and publishing",
        aliases=("BROKER_WRITE_URL",),
    ),
    Setting(
        "broker_transport",
        "string",
        None,
        "The transport to use when `broker_url` names none.",
        status=NOT_SUPPORTED,
        reason="the scheme of `broker_url` picks the transport",
        aliases=("BROKER_TRANSPORT",),
    ),
    Setting(
        "broker_transport_options",
        "dict",
        {},
        (
            "Options of the broker's engine: for Redis `global_keyprefix`, `max_connections`, "
            "`lease_timeout`, socket and TLS options, `cluster_hash_tag` (Redis Cluster), "
            "`master_name`, `min_replicas` and `min_replicas_timeout` (Sentinel, or any "
            "replicated Redis: publishes and acks `WAIT` for that many replicas); "
            "for RabbitMQ `confirm_publish`, "
            "`prefetch_count`, `consumer_timeout`... (see the engine's page)."
        ),
        aliases=("BROKER_TRANSPORT_OPTIONS",),
    ),
    Setting(
        "broker_connection_timeout",
        "float",
        4,
        (
            "Seconds to wait for a broker connection to open before giving up on that attempt "
            "(Redis: `socket_connect_timeout`; RabbitMQ: `connect_timeout`)."
        ),
        aliases=("BROKER_CONNECTION_TIMEOUT",),
    ),
    Setting(
        "broker_connection_retry",
        "bool",
        True,
        (
            "Retry a lost broker connection instead of giving up. A failed operation is "
            "retried for at most the lease (`lease_timeout`, 30 s), then raises "
            "`OperationalError`."
        ),
        aliases=("BROKER_CONNECTION_RETRY",),
    ),
    Setting(
        "broker_connection_retry_on_startup",
        "bool",
        None,
        (
            "Retry the first broker connection (a worker's start, a client's first publish) "
            "when the broker is not up yet; None follows `broker_connection_retry`."
        ),
        aliases=("BROKER_CONNECTION_RETRY_ON_STARTUP",),
    ),
    Setting(
        "broker_connection_max_retries",
        "int",
        100,
        (
            "How many times a broker operation is retried before giving up; 0 or None retries "
            "forever. Mid-run the lease (30 s) also bounds the retries; at start-up only this."
        ),
        aliases=("BROKER_CONNECTION_MAX_RETRIES",),
    ),
    Setting(
        "broker_channel_error_retry",
        "bool",
        False,
        "Also retry after AMQP channel errors, as after connection errors.",
        status=NOT_SUPPORTED,
        reason="an AMQP channel error that is not a connection loss is reported, not retried",
        aliases=("BROKER_CHANNEL_ERROR_RETRY",),
    ),
    Setting(
        "broker_failover_strategy",
        "string",
        None,
        (
            "How to pick the next broker from a list of URLs (`amqp://h1;amqp://h2` or a "
            "list) when one fails: `round-robin` (in order) or `shuffle` (random order). "
            "RabbitMQ only; an unreachable URL is logged once and skipped."
        ),
        differs="a function is refused at start (only the two named strategies)",
        aliases=("BROKER_FAILOVER_STRATEGY",),
    ),
    Setting(
        "broker_heartbeat",
        "int",
        120,
        (
            "AMQP heartbeat interval, seconds: a connection that stays silent for two intervals "
            "is considered dead. 0 switches heartbeats off."
        ),
        default=60,
        differs="a dead connection is noticed within two minutes instead of four",
        aliases=("BROKER_HEARTBEAT",),
    ),
    Setting(
        "broker_heartbeat_checkrate",
        "int",
        3.0,
        "How often per heartbeat interval the worker checks that heartbeats arrive.",
        status=NOT_SUPPORTED,
        reason="aiormq checks heartbeats on its own schedule",
        aliases=("BROKER_HEARTBEAT_CHECKRATE",),
    ),
    Setting(
        "broker_login_method",
        "string",
        None,
        "The AMQP login method, e.g. `AMQPLAIN` or `EXTERNAL`.",
        status=NOT_SUPPORTED,
        reason="connections log in with the URL's user name and password (AMQPLAIN/PLAIN)",
        aliases=("BROKER_LOGIN_METHOD",),
    ),
    Setting(
        "broker_native_delayed_delivery_queue_type",
        "string",
        "quorum",
        (
            "The queue type (`quorum` or `classic`) of the `celery_delayed_0..27` queues of "
            "Celery 5.5's native delayed delivery, which a worker consuming a quorum queue on "
            "a topic or fanout exchange declares so Celery clients' countdowns reach it."
        ),
        differs="celeriac clients still send countdowns through celeriac's own delay ladder",
        aliases=("BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE",),
    ),
    Setting(
        "broker_delayed_delivery",
        "bool",
        CELERIAC_ONLY,
        (
            "Clients put countdown and ETA tasks straight into celeriac's broker-side delayed "
            "store (Redis sorted set, RabbitMQ delay queues, SQLite rows) instead of on the "
            "queue with their `eta` header. Only for fleets of celeriac workers: Celery "
            "workers never read that store. Off, celeriac workers still move far ETAs there "
            "(`worker_eta_hold_seconds`), so their memory stays bounded either way."
        ),
        default=False,
    ),
    Setting(
        "broker_pool_limit",
        "int",
        10,
        (
            "The most connections a client's calling-thread publisher keeps open to a Redis or "
            "RabbitMQ broker (one per thread publishing at the same moment; a thread finding "
            "all busy waits for one). None or 0: no limit."
        ),
        aliases=("BROKER_POOL_LIMIT",),
    ),
    Setting(
        "broker_pool_acquire_timeout",
        "float",
        None,
        (
            "Seconds a sync publish waits for a free pooled Redis or RabbitMQ connection when "
            "`broker_pool_limit` are in use; None waits 20 s."
        ),
        aliases=("BROKER_POOL_ACQUIRE_TIMEOUT",),
    ),
    Setting(
        "broker_use_ssl",
        "bool",
        False,
        (
            "TLS to the broker: True, or a mapping of options. Redis: `ssl_cert_reqs`, "
            "`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` (makes a `redis://` URL use TLS). "
            "RabbitMQ: `ca_certs` (or `cafile`), `certfile`, `keyfile`, `cert_reqs`, "
            "`server_hostname` (makes an `amqp://` URL use TLS)."
        ),
        aliases=("BROKER_USE_SSL",),
    ),
    Setting(
        "broker_host",
        "string",
        None,
        "The broker's host, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the broker as a URL in `broker_url`",
        aliases=("BROKER_HOST",),
    ),
    Setting(
        "broker_port",
        "int",
        None,
        "The broker's port, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the broker as a URL in `broker_url`",
        aliases=("BROKER_PORT",),
    ),
    Setting(
        "broker_user",
        "string",
        None,
        "The user to log in to the broker as, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the broker as a URL in `broker_url`",
        aliases=("BROKER_USER",),
    ),
    Setting(
        "broker_password",
        "string",
        None,
        "The password to log in to the broker with, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the broker as a URL in `broker_url`",
        aliases=("BROKER_PASSWORD",),
    ),
    Setting(
        "broker_vhost",
        "string",
        None,
        "The broker's virtual host, for configurations without a URL.",
        status=NOT_SUPPORTED,
        reason="give the broker as a URL in `broker_url`",
        aliases=("BROKER_VHOST",),
    ),
)
