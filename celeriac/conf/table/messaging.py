"""Settings of events, remote control and message signing.

Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by
``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and
celeriac's defaults live here.
"""

from __future__ import annotations

from celeriac.conf.model import NOT_SUPPORTED, Setting

__all__ = ["SETTINGS"]

SETTINGS = (
    Setting(
        "control_queue_ttl",
        "float",
        300.0,
        (
            "Seconds a remote-control message waits in a worker's control queue before it is "
            "dropped."
        ),
        aliases=("CONTROL_QUEUE_TTL",),
    ),
    Setting(
        "control_queue_expires",
        "float",
        10.0,
        "Seconds an unused control queue lives before the broker deletes it.",
        aliases=("CONTROL_QUEUE_EXPIRES",),
    ),
    Setting(
        "control_queue_exclusive",
        "bool",
        True,
        "Declare control queues exclusive to their connection.",
        status=NOT_SUPPORTED,
        reason=(
            "workers declare their control queue non-exclusive; it expires "
            "control_queue_expires seconds after its worker is gone"
        ),
        aliases=("CONTROL_QUEUE_EXCLUSIVE",),
    ),
    Setting(
        "control_queue_durable",
        "bool",
        False,
        "Declare control queues durable.",
        status=NOT_SUPPORTED,
        reason="control queues are transient, as Celery's default",
        aliases=("CONTROL_QUEUE_DURABLE",),
    ),
    Setting(
        "control_exchange",
        "string",
        "celery",
        "The name of the remote-control exchange (`<name>.pidbox`).",
        aliases=("CONTROL_EXCHANGE",),
    ),
    Setting(
        "event_queue_expires",
        "float",
        60.0,
        "Seconds an unused event-receiver queue lives before the broker deletes it.",
        aliases=("CELERY_EVENT_QUEUE_EXPIRES",),
    ),
    Setting(
        "event_queue_ttl",
        "float",
        5.0,
        "Seconds an event waits in a receiver's queue before it is dropped.",
        aliases=("CELERY_EVENT_QUEUE_TTL",),
    ),
    Setting(
        "event_queue_prefix",
        "string",
        "celeryev",
        "The name prefix of event-receiver queues.",
        aliases=("CELERY_EVENT_QUEUE_PREFIX",),
    ),
    Setting(
        "event_queue_exclusive",
        "bool",
        True,
        "Declare event-receiver queues exclusive to their connection.",
        aliases=("CELERY_EVENT_QUEUE_EXCLUSIVE",),
    ),
    Setting(
        "event_queue_durable",
        "bool",
        False,
        "Declare event-receiver queues durable.",
        aliases=("CELERY_EVENT_QUEUE_DURABLE",),
    ),
    Setting(
        "event_serializer",
        "string",
        "json",
        "How events are encoded.",
        aliases=("CELERY_EVENT_SERIALIZER",),
    ),
    Setting(
        "event_exchange",
        "string",
        "celeryev",
        "The name of the event exchange.",
        aliases=("CELERY_EVENT_EXCHANGE",),
    ),
    Setting(
        "security_certificate",
        "string",
        None,
        (
            "The X.509 certificate (PEM file) of `security_key`, which names the signer of "
            "each message; read by `app.setup_security()`."
        ),
        aliases=("CELERY_SECURITY_CERTIFICATE",),
    ),
    Setting(
        "security_cert_store",
        "string",
        None,
        "A directory (or glob) of the PEM certificates trusted to sign messages.",
        aliases=("CELERY_SECURITY_CERT_STORE",),
    ),
    Setting(
        "security_key",
        "string",
        None,
        "The RSA private key (PEM file) messages are signed with.",
        aliases=("CELERY_SECURITY_KEY",),
    ),
    Setting(
        "security_key_password",
        "bytes",
        None,
        "The password of that private key.",
        aliases=("CELERY_SECURITY_KEY_PASSWORD",),
    ),
    Setting(
        "security_digest",
        "string",
        "sha256",
        "The digest algorithm of message signatures.",
        aliases=("CELERY_SECURITY_DIGEST",),
    ),
)
