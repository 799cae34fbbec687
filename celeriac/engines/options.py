"""The Celery settings that tune an engine, turned into that engine's options.

An engine reads one mapping of options: ``broker_transport_options`` for a broker,
``result_backend_transport_options`` for a result store. The Celery settings that tune
the same things are added to that mapping here, under the names the engine reads, unless
the transport options already give them (those win):

=============================== ===================================== =================
setting                         option                                engines
=============================== ===================================== =================
``broker_use_ssl``              ``ssl`` (True or a mapping)           Redis, RabbitMQ
``broker_heartbeat``            ``heartbeat``                         RabbitMQ
``broker_pool_limit``           ``max_connections`` (the client's     Redis, RabbitMQ
                                calling-thread publisher)
``broker_pool_acquire_timeout`` ``pool_timeout`` (same)               Redis, RabbitMQ
``redis_backend_use_ssl``       ``ssl``                               Redis results
``redis_socket_timeout``,       ``socket_timeout``,                   Redis results
``redis_socket_connect_timeout``  ``socket_connect_timeout``
``redis_socket_keepalive``      ``socket_keepalive``                  Redis results
``redis_retry_on_timeout``      ``retry_on_timeout``                  Redis results
``redis_max_connections``       ``max_connections``                   Redis results
``database_*``                  the same names                        PostgreSQL
``result_persistent``           ``persistent``                        rpc://
``broker_connection_*``,        ``max_retries``, ``retry_deadline``,  every engine
``result_backend_*_retr*``      ``connect_max_retries``... (see
                                :mod:`celeriac.reconnect`)
=============================== ===================================== =================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.engines import engine_for
from celeriac.reconnect import backend_retry_options, broker_retry_options

__all__ = [
    "COMPRESSING_ENGINES",
    "backend_options",
    "broker_options",
    "compresses_results",
    "delayed_delivery",
    "option_flag",
    "publisher_options",
]

COMPRESSING_ENGINES = frozenset({"redis", "sqlite", "memory"})
"""Result stores that keep ``result_compression``'s payloads (bytes kept as they are).
Celery's database and rpc backends store results uncompressed; so do ours."""

_REDIS_RESULTS = {
    "redis_backend_use_ssl": "ssl",
    "redis_socket_timeout": "socket_timeout",
    "redis_socket_connect_timeout": "socket_connect_timeout",
    "redis_socket_keepalive": "socket_keepalive",
    "redis_retry_on_timeout": "retry_on_timeout",
    "redis_max_connections": "max_connections",
}
_DATABASE = (
    "database_engine_options",
    "database_table_schemas",
    "database_table_names",
    "database_short_lived_sessions",
    "database_create_tables_at_setup",
)


def _engine(url: str | None) -> str | None:
    found = engine_for(url) if url and "://" in url else None
    return found.name if found is not None else None


def _add(options: dict[str, Any], conf: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """Each setting of ``names`` as its option; None is passed on (no limit, no timeout)
    except for TLS, where None means off."""
    for setting, option in names.items():
        if setting in conf and (conf[setting] is not None or option != "ssl"):
            options.setdefault(option, conf[setting])


def option_flag(value: Any) -> bool:
    """An on/off option that may come from a settings file as text (``"false"``)."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "0", "false", "no", "off"}
    return bool(value)


def broker_options(conf: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The options of the broker at ``url``: its transport options plus the settings."""
    options = dict(conf.get("broker_transport_options") or {})
    if "max_retries" in options:
        # kombu bounds connection attempts by this transport option as well
        options.setdefault("connect_max_retries", options["max_retries"])
    for name, value in broker_retry_options(conf, options).items():
        options.setdefault(name, value)
    engine = _engine(url)
    if engine == "redis" and "connect_timeout" in options:
        options.setdefault("socket_connect_timeout", options["connect_timeout"])
    if engine in ("redis", "amqp") and conf.get("broker_use_ssl"):
        options.setdefault("ssl", conf["broker_use_ssl"])
    if engine == "amqp" and conf.get("broker_heartbeat") is not None:
        options.setdefault("heartbeat", conf["broker_heartbeat"])
    if engine == "amqp" and conf.get("broker_native_delayed_delivery_queue_type"):
        options.setdefault(
            "native_delayed_delivery_queue_type", conf["broker_native_delayed_delivery_queue_type"]
        )
    if engine == "amqp" and conf.get("broker_failover_strategy") is not None:
        options.setdefault("failover_strategy", conf["broker_failover_strategy"])
    return options


def delayed_delivery(conf: Mapping[str, Any]) -> bool:
    """Whether clients put ETA tasks in the broker-side delayed store themselves: the
    ``broker_delayed_delivery`` setting, or (its older spelling) the transport option
    ``delayed_delivery=True``."""
    if conf.get("broker_delayed_delivery"):
        return True
    return (conf.get("broker_transport_options") or {}).get("delayed_delivery") is True


def publisher_options(conf: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The options of the sync API's calling-thread publisher: the broker's, and its pool."""
    options = broker_options(conf, url)
    if _engine(url) in ("redis", "amqp"):
        limit = conf.get("broker_pool_limit")
        options.setdefault("max_connections", limit or None)
        timeout = conf.get("broker_pool_acquire_timeout")
        if timeout is not None:
            options.setdefault("pool_timeout", timeout)
    return options


def backend_options(conf: Mapping[str, Any], url: str, broker_url: str) -> dict[str, Any]:
    """The options of the result store at ``url``: its transport options plus the settings."""
    options = dict(conf.get("result_backend_transport_options") or {})
    for name, value in backend_retry_options(conf).items():
        options.setdefault(name, value)
    engine = _engine(url)
    if engine == "redis":
        _add(options, conf, _REDIS_RESULTS)
    elif engine == "postgres":
        for name in _DATABASE:
            if conf.get(name) is not None:
                options.setdefault(name, conf[name])
    elif url.startswith("rpc:"):
        # rpc:// results travel over the broker connection.
        options.setdefault("broker_url", broker_url)
        options.setdefault("broker_transport_options", broker_options(conf, broker_url))
        options.setdefault("persistent", bool(conf.get("result_persistent")))
    return options


def compresses_results(url: str | None) -> bool:
    """Whether the result store at ``url`` keeps compressed payloads."""
    return _engine(url) in COMPRESSING_ENGINES
