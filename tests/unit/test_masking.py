"""Passwords never shown: URL masking in log lines, errors, banners and ``celeriac demo``."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from celeriac import Celery, masking
from celeriac.cli import demo as demo_command
from celeriac.conf import checks
from celeriac.exceptions import ImproperlyConfigured, SerializationError
from celeriac.protocol import serializers
from celeriac.transport import transport_from_url

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"amqp://guest:{SECRET}@h:5672//", "amqp://guest:********@h:5672//"),
        (f"redis://:{SECRET}@h/0", "redis://:********@h/0"),
        (
            f"error at rediss://u:{SECRET}@a:1/0 and amqp://v:{SECRET}@b//, giving up",
            "error at rediss://u:********@a:1/0 and amqp://v:********@b//, giving up",
        ),
        ("redis://localhost/0", "redis://localhost/0"),
        ("no url here", "no url here"),
    ],
)
def test_mask_url(text: str, masked: str) -> None:
    assert masking.mask_url(text) == masked
    assert SECRET not in masking.mask_url(text, "**")


def test_log_lines_and_tracebacks_are_masked_whoever_logs_them() -> None:
    masking.install()
    masking.install()  # idempotent
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting to %s", f"amqp://guest:{SECRET}@h//")
        try:
            raise ConnectionError(f"cannot reach redis://:{SECRET}@h:6379/0")
        except ConnectionError:
            logger.exception("failed")
        logger.warning("plain %d", 5)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = out.getvalue()
    assert SECRET not in text
    assert "amqp://guest:********@h//" in text
    assert "redis://:********@h:6379/0" in text and "Traceback" in text
    assert "plain 5" in text


def test_url_errors_do_not_show_the_password() -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        transport_from_url(f"nosuch://u:{SECRET}@h/")
    assert SECRET not in str(raised.value) and "nosuch://u:********@h/" in str(raised.value)


async def test_an_unreachable_rabbitmq_error_does_not_show_the_password() -> None:
    transport = transport_from_url(
        f"amqp://guest:{SECRET}@127.0.0.1:1//", {"max_retries": 0, "connect_timeout": 1}
    )
    with pytest.raises(ConnectionError) as raised:
        await transport.connect()
    assert SECRET not in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert SECRET not in repr(transport)


class _Stopped:
    """Stands for the demo's worker process."""

    def send_signal(self, signum: int) -> None:
        pass

    def wait(self, timeout: float) -> int:
        return 1


def test_demo_never_prints_the_broker_password(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:1/0"

    def start(broker: str, workdir: Path) -> Any:
        (workdir / "worker.log").write_text(f"consumer: cannot connect to {broker}\n")
        return _Stopped()

    def fails() -> Any:
        raise ConnectionError(f"Redis at {url} is unreachable")

    monkeypatch.setattr(demo_command, "_start_worker", start)
    monkeypatch.setattr(demo_command, "_scenarios", lambda: [("publish", fails, bool)])
    monkeypatch.setenv("CELERIAC_BROKER_URL", "")  # demo sets it: undone after the test
    result = CliRunner().invoke(demo_command.demo, ["--broker", url])
    assert result.exit_code != 0
    assert "redis://user:********@127.0.0.1:1/0" in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({"accept_content": ["json", "pickle"]}, "accept_content accepts pickle"),
        ({"result_accept_content": ["application/x-python-serialize"]}, "result_accept_content"),
        ({}, None),
        ({"accept_content": ["json", "msgpack"]}, None),
    ],
)
def test_pickle_accepted_is_warned_about_at_start(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any],
    warned: str | None,
) -> None:
    monkeypatch.setattr(checks, "_warned", set())
    app = Celery("pickle", broker="memory://", **settings)
    with caplog.at_level(logging.WARNING, logger="celeriac.conf"):
        checks.check_settings(app.conf)
    found = [r.getMessage() for r in caplog.records if "pickle" in r.getMessage()]
    if warned is None:
        assert found == []
    else:
        assert len(found) == 1 and warned in found[0] and "run any code" in found[0]


def test_auth_named_without_setup_security_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(checks, "_warned", set())
    monkeypatch.delitem(serializers._FACTORIES, "auth", raising=False)
    monkeypatch.delitem(serializers._cache, "auth", raising=False)
    app = Celery("signed", broker="memory://", task_serializer="auth", accept_content=["auth"])
    with caplog.at_level(logging.WARNING, logger="celeriac.conf"):
        checks.check_settings(app.conf)
    assert any("app.setup_security() was not called" in r.getMessage() for r in caplog.records)
    with pytest.raises(SerializationError, match=r"set up by app\.setup_security"):
        serializers.get_serializer("auth")
