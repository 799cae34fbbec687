"""The producer (seed 001): a request handler that answers at once; a worker sends the e-mail."""

from __future__ import annotations

from proj.tasks import send_confirmation_email

__all__ = ["register"]


def register(address: str, name: str) -> dict[str, str]:
    """Sign a user up: save them (not shown), queue the confirmation e-mail, answer."""
    result = send_confirmation_email.delay(address, name)
    return {"status": "registered", "email_task": result.id}
