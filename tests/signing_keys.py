"""RSA keys and self-signed certificates for the message-signing tests (``cryptography``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["Keys", "make_keys"]


@dataclass(frozen=True)
class Keys:
    """Paths of a private key, its certificate and a store directory holding the certificate."""

    key: Path
    cert: Path
    store: Path


def make_keys(folder: Path, name: str = "signer", *, expired: bool = False) -> Keys:
    """A fresh 2048-bit RSA key and a self-signed certificate for it, under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"celeriac-test-{name}")])
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=3), now - dt.timedelta(days=1))
        if expired
        else (
            now - dt.timedelta(days=1),
            now + dt.timedelta(days=30),
        )
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path, store = folder / f"{name}.key", folder / f"{name}.pem", folder / "store"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    store.mkdir(exist_ok=True)
    (store / f"{name}.pem").write_bytes(pem)
    return Keys(key_path, cert_path, store)
