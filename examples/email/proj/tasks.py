"""What leaves the request-response cycle (seed 001, steps 4 to 6): sending the e-mail."""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage

from proj.celery import app

__all__ = ["send_confirmation_email"]

SMTP_HOST = os.environ.get("SMTP_HOST", "")  # empty: print the message instead of sending it


@app.task(autoretry_for=(smtplib.SMTPException, OSError), retry_backoff=True, max_retries=5)
def send_confirmation_email(address: str, name: str) -> str:
    """Send the sign-up confirmation; retried with backoff if the mail server is unreachable."""
    message = EmailMessage()
    message["From"] = "noreply@example.com"
    message["To"] = address
    message["Subject"] = "Confirm your registration"
    message.set_content(f"Hello {name}, please confirm your address.")
    if not SMTP_HOST:
        print(message)
        return f"printed confirmation for {address}"
    with smtplib.SMTP(SMTP_HOST, int(os.environ.get("SMTP_PORT", "25")), timeout=10) as smtp:
        smtp.send_message(message)
    return f"sent confirmation to {address}"
