"""A Celery app that signs and verifies its task messages (worker processes of the tests)."""

import os

from celery import Celery

app = Celery("signed", broker=os.environ.get("INTEROP_URL"), backend=os.environ.get("INTEROP_URL"))
PREFIX = {"global_keyprefix": os.environ.get("INTEROP_PREFIX", "")}
app.conf.update(
    broker_transport_options=PREFIX,
    result_backend_transport_options=PREFIX,
    task_serializer="auth",
    accept_content=["auth"],
    result_accept_content=["json"],
    security_key=os.path.join(os.environ.get("SIGNING_DIR", ""), "signer.key"),
    security_certificate=os.path.join(os.environ.get("SIGNING_DIR", ""), "signer.pem"),
    security_cert_store=os.path.join(os.environ.get("SIGNING_DIR", ""), "store"),
)
app.setup_security()


@app.task(name="signed.echo")
def echo(value: object) -> list[object]:
    return [value, "celery"]
