"""Message signing against Celery's ``auth`` serializer: each side verifies what the other signs.

First the serializers alone (Celery's ``SecureSerializer`` and celeriac's ``AuthSerializer``),
then on the wire through Redis: a Celery client signs and a celeriac worker verifies and runs
the task, and a celeriac client signs for a Celery worker.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured, MessageError, SecurityError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import TaskMessage, decode_task, encode_task
from celeriac.signing import AuthSerializer, CertStore
from tests.integration.test_worker_process import wait_for_line
from tests.signing_keys import Keys, make_keys

pytestmark = pytest.mark.interop
pytest.importorskip("cryptography")

ROOT = Path(__file__).resolve().parents[2]
VALUE = [[1, "é ☃", {"x": [None, True, 2.5]}], {"k": "v"}, {"callbacks": None, "chain": None}]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("signing"))


def _celery_serializer(keys: Keys) -> Any:
    from celery.security.certificate import Certificate, FSCertStore
    from celery.security.key import PrivateKey
    from celery.security.serialization import SecureSerializer

    return SecureSerializer(
        PrivateKey(keys.key.read_text()),
        Certificate(keys.cert.read_text()),
        FSCertStore(str(keys.store)),
        "sha256",
        "json",
    )


def _ours(keys: Keys) -> AuthSerializer:
    return AuthSerializer.from_files(str(keys.key), str(keys.cert), str(keys.store))


def test_celery_signs_celeriac_verifies(keys: Keys) -> None:
    signed = _celery_serializer(keys).serialize(VALUE)
    assert _ours(keys).loads(signed.encode()) == VALUE


def test_celeriac_signs_celery_verifies(keys: Keys) -> None:
    assert _celery_serializer(keys).deserialize(_ours(keys).dumps(VALUE)) == VALUE


def test_a_tampered_body_fails_on_both_sides(keys: Keys) -> None:
    from celery.exceptions import SecurityError as CelerySecurityError

    fields = base64.b64decode(_ours(keys).dumps(VALUE)).split(b"\x00\x01", 4)
    fields[4] = fields[4].replace(b'"v"', b'"w"')
    tampered = base64.b64encode(b"\x00\x01".join(fields))
    with pytest.raises(SecurityError, match="bad signature"):
        _ours(keys).loads(tampered)
    with pytest.raises(CelerySecurityError):
        _celery_serializer(keys).deserialize(tampered)


def test_a_signer_missing_from_the_store_is_refused(keys: Keys, tmp_path: Path) -> None:
    other = make_keys(tmp_path / "other", "other")
    stranger = AuthSerializer.from_files(str(other.key), str(other.cert), str(other.store))
    with pytest.raises(SecurityError, match="unknown certificate"):
        _ours(keys).loads(stranger.dumps(VALUE))


def test_an_expired_certificate_in_the_store_is_refused(tmp_path: Path) -> None:
    old = make_keys(tmp_path, "old", expired=True)
    with pytest.raises(SecurityError, match="expired certificate"):
        CertStore(str(old.store))


def test_a_bad_signature_dead_letters_the_message(keys: Keys, tmp_path: Path) -> None:
    app = _signed_client(Celery, keys, "memory://")
    envelope = encode_task(TaskMessage(id="a", task="t", args=[1]), "auth")
    assert envelope.content_type == "application/data"
    assert decode_task(envelope, ["auth"]).args == [1]
    forged = Envelope(
        base64.b64encode(b"x\x00\x01y\x00\x01application/json\x00\x01utf-8\x00\x01[]")
    )
    forged.content_type, forged.headers = "application/data", dict(envelope.headers)
    with pytest.raises(MessageError, match="not a signed message"):
        decode_task(forged, ["auth"])
    app.close()


def test_setup_security_needs_auth_settings(keys: Keys) -> None:
    app = Celery("unsigned", broker="memory://")
    with pytest.raises(ImproperlyConfigured, match="task_serializer='auth'"):
        app.setup_security()
    app.conf.update(task_serializer="auth", accept_content=["auth"])
    with pytest.raises(ImproperlyConfigured, match="security_key"):
        app.setup_security()


# --- on the wire, through Redis ----------------------------------------------------------


def _signed_client(kind: Any, keys: Keys, url: str, prefix: str = "") -> Any:
    """A client app of ``kind`` (celery's or celeriac's Celery) that signs its messages."""
    app = kind("signed-client", broker=url, backend=None if url == "memory://" else url)
    options = {"global_keyprefix": prefix}
    app.conf.update(
        broker_transport_options=options,
        result_backend_transport_options=options,
        task_serializer="auth",
        accept_content=["auth"],
        result_accept_content=["json"],
        security_key=str(keys.key),
        security_certificate=str(keys.cert),
        security_cert_store=str(keys.store),
    )
    if kind is Celery:
        app.setup_security()
    else:  # Celery's setup_security would also disable kombu's other serializers process-wide
        from celery.security.serialization import register_auth

        register_auth(keys.key.read_text(), None, keys.cert.read_text(), str(keys.store))
    return app


@pytest.fixture
def start_signed_worker(
    interop_url: str, interop_prefix: str, keys: Keys, tmp_path: Path
) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str) -> Path:
        env = {
            **os.environ,
            "INTEROP_URL": interop_url,
            "INTEROP_PREFIX": interop_prefix,
            "SIGNING_DIR": str(keys.key.parent),
            "PYTHONPATH": str(ROOT),
        }
        module = f"tests.interop.signed_{kind}_side"
        command = [sys.executable, "-m", kind, "-A", module, "worker", "-l", "info"]
        command += ["-P", "solo"] if kind == "celery" else ["-c", "1"]
        log = tmp_path / f"{kind}.log"
        started.append(
            subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        )
        return log

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def test_celery_client_signs_for_a_celeriac_worker(
    keys: Keys, interop_url: str, interop_prefix: str, start_signed_worker: Any
) -> None:
    import celery

    log = start_signed_worker("celeriac")
    client = _signed_client(celery.Celery, keys, interop_url, interop_prefix)
    result = client.send_task("signed.echo", args=["hi"])
    assert result.get(timeout=30) == ["hi", "celeriac"]
    unsigned = client.send_task("signed.echo", args=["plain"], serializer="json")
    wait_for_line(log, "refusing to decode content type 'application/json'", timeout=30)
    assert unsigned.state == "PENDING"  # never run: dead-lettered by the worker
    client.close()


def test_celeriac_client_signs_for_a_celery_worker(
    keys: Keys, interop_url: str, interop_prefix: str, start_signed_worker: Any
) -> None:
    start_signed_worker("celery")
    client = _signed_client(Celery, keys, interop_url, interop_prefix)
    assert client.send_task("signed.echo", args=["hi"]).get(timeout=30) == ["hi", "celery"]
    client.close()
