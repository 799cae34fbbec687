"""Message signing: Celery's ``auth`` serializer, read and written the same way.

A signed body (content type ``application/data``) is base64 of five fields joined by
``\\x00\\x01``: the signer's certificate id (base64), the signature (base64), the inner content
type, the inner content encoding and the inner body, as the inner serializer (``json`` by
default) wrote it. The signature is RSA-PSS (MGF1, maximum salt length) over the inner body
with ``security_digest`` (sha256). The certificate id is the issuer's attribute values joined
by spaces, a space, and the serial number. A receiver verifies the signature with the
certificate of that id in its store (``security_cert_store``: a directory or a glob of PEM
files) before it decodes anything.

:meth:`Celery.setup_security` (see :func:`setup_security`) registers the serializer; it needs
the ``cryptography`` package (``pip install 'celeriac[security]'``). Only RSA keys and
certificates are supported, as in Celery.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import glob
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import (
    ImproperlyConfigured,
    MissingDependency,
    SecurityError,
    SerializationError,
)
from celeriac.protocol.serializers import (
    get_serializer,
    register_serializer,
    serializer_for_content_type,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
    from cryptography.hazmat.primitives.hashes import HashAlgorithm
    from cryptography.x509 import Certificate as X509Certificate

__all__ = ["CONTENT_TYPE", "AuthSerializer", "CertStore", "Certificate", "setup_security"]

CONTENT_TYPE = "application/data"
"""The content type of signed messages (Celery registers ``auth`` under it)."""
_SEP = b"\x00\x01"


def _crypto() -> Any:
    try:
        import cryptography.x509  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError as exc:
        raise MissingDependency("message signing: pip install 'celeriac[security]'") from exc
    return cryptography


def _digest(name: str) -> HashAlgorithm:
    _crypto()
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - optional dependency

    algorithm = getattr(hashes, name.upper(), None)
    if not isinstance(algorithm, type) or not issubclass(algorithm, hashes.HashAlgorithm):
        raise ImproperlyConfigured(f"security_digest: unknown digest {name!r}")
    return algorithm()


def _padding(digest: HashAlgorithm) -> Any:
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

    return padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.MAX_LENGTH)


class Certificate:
    """An X.509 certificate (PEM) with an RSA public key."""

    def __init__(self, pem: str | bytes) -> None:
        _crypto()
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
        from cryptography.x509 import load_pem_x509_certificate  # noqa: PLC0415

        try:
            self._cert: X509Certificate = load_pem_x509_certificate(
                pem.encode() if isinstance(pem, str) else pem
            )
        except ValueError as exc:
            raise SecurityError(f"invalid certificate: {exc}") from exc
        key = self._cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SecurityError("only RSA certificates are supported")
        self._key: RSAPublicKey = key

    @property
    def id(self) -> str:
        """Issuer and serial number, as Celery names a signer."""
        issuer = " ".join(str(attribute.value) for attribute in self._cert.issuer)
        return f"{issuer} {self._cert.serial_number}"

    def has_expired(self) -> bool:
        """Whether the certificate's validity has ended."""
        return dt.datetime.now(dt.UTC) >= self._cert.not_valid_after_utc

    def verify(self, data: bytes, signature: bytes, digest: HashAlgorithm) -> None:
        """Raise SecurityError unless ``signature`` is this certificate's key's over ``data``."""
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        if self.has_expired():
            raise SecurityError(f"expired certificate: {self.id!r}")
        try:
            self._key.verify(signature, data, _padding(digest), digest)
        except InvalidSignature:
            raise SecurityError(f"bad signature (signer {self.id!r})") from None


class CertStore:
    """The certificates trusted to sign, by id: every PEM file of a directory or a glob."""

    def __init__(self, path: str) -> None:
        self._certs: dict[str, Certificate] = {}
        pattern = os.path.join(path, "*") if os.path.isdir(path) else path
        for name in sorted(glob.glob(pattern)):
            with open(name, "rb") as file:
                cert = Certificate(file.read())
            if cert.has_expired():
                raise SecurityError(f"expired certificate in the store: {name} ({cert.id!r})")
            if cert.id in self._certs:
                raise SecurityError(f"duplicate certificate in the store: {cert.id!r}")
            self._certs[cert.id] = cert

    def __getitem__(self, cert_id: str) -> Certificate:
        try:
            return self._certs[cert_id]
        except KeyError:
            raise SecurityError(f"unknown certificate: {cert_id!r}") from None

    def __len__(self) -> int:
        return len(self._certs)


def _private_key(pem: bytes, password: bytes | str | None) -> RSAPrivateKey:
    _crypto()
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    secret = password.encode() if isinstance(password, str) else password
    try:
        key = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError) as exc:
        raise SecurityError(f"invalid private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecurityError("only RSA private keys are supported")
    return key


class AuthSerializer:
    """Signs what another serializer writes; verifies before the other one reads."""

    name = "auth"
    content_type = CONTENT_TYPE
    content_encoding = "utf-8"

    def __init__(
        self,
        key: RSAPrivateKey | None,
        cert: Certificate | None,
        store: CertStore | None,
        digest: str = "sha256",
        serializer: str = "json",
    ) -> None:
        self._key = key
        self._cert = cert
        self._store = store
        self._digest = _digest(digest)
        self._inner = get_serializer(serializer)

    @classmethod
    def from_files(
        cls,
        key: str,
        cert: str,
        store: str,
        key_password: bytes | str | None = None,
        digest: str = "sha256",
        serializer: str = "json",
    ) -> AuthSerializer:
        """The serializer of a PEM key file, its PEM certificate and a certificate store."""
        with open(key, "rb") as key_file, open(cert, "rb") as cert_file:
            key_pem, cert_pem = key_file.read(), cert_file.read()
        return cls(
            _private_key(key_pem, key_password),
            Certificate(cert_pem),
            CertStore(store),
            digest,
            serializer,
        )

    def dumps(self, obj: Any) -> bytes:
        """The signed body of ``obj``."""
        if self._key is None or self._cert is None:
            raise SecurityError("cannot sign: no security_key and security_certificate")
        body = self._inner.dumps(obj)
        signature = self._key.sign(body, _padding(self._digest), self._digest)
        encoding = "utf-8" if self._inner.name == "json" else "binary"
        fields = [
            base64.b64encode(self._cert.id.encode()),
            base64.b64encode(signature),
            self._inner.content_type.encode(),
            encoding.encode(),
            body,
        ]
        return base64.b64encode(_SEP.join(fields))

    def loads(self, data: bytes) -> Any:
        """Verify the signature of a signed body, then decode the inner body."""
        if self._store is None:
            raise SecurityError("cannot verify: no security_cert_store")
        try:
            fields = base64.b64decode(data, validate=True).split(_SEP, 4)
            signer, signature = (base64.b64decode(field, validate=True) for field in fields[:2])
            content_type, body = fields[2].decode(), fields[4]
        except (binascii.Error, ValueError, IndexError) as exc:
            raise SecurityError(f"not a signed message: {exc}") from exc
        self._store[signer.decode(errors="replace")].verify(body, signature, self._digest)
        try:
            inner = serializer_for_content_type(content_type)
        except Exception as exc:
            raise SerializationError(f"signed body of unknown type {content_type!r}") from exc
        return inner.loads(body)


def setup_security(
    conf: Any,
    allowed_serializers: Collection[str] | None = None,
    key: str | None = None,
    key_password: bytes | str | None = None,
    cert: str | None = None,
    store: str | None = None,
    digest: str | None = None,
    serializer: str = "json",
) -> AuthSerializer:
    """Register the ``auth`` serializer from these arguments, else the ``security_*`` settings.

    As in Celery, ``task_serializer`` must be ``auth`` and ``accept_content`` ``['auth']``
    (ImproperlyConfigured otherwise), and the key, certificate and store must all be given.
    ``allowed_serializers`` is accepted for Celery's signature; celeriac decodes only what
    ``accept_content`` lists anyway.
    """
    del allowed_serializers
    if conf["task_serializer"] != "auth" or list(conf["accept_content"]) != ["auth"]:
        raise ImproperlyConfigured(
            "message signing needs task_serializer='auth' and accept_content=['auth']: "
            "there is no point in signing messages that are not verified"
        )
    key = key or conf["security_key"]
    key_password = key_password or conf["security_key_password"]
    cert = cert or conf["security_certificate"]
    store = store or conf["security_cert_store"]
    if not (key and cert and store):
        raise ImproperlyConfigured(
            "message signing needs security_key, security_certificate and security_cert_store"
        )
    auth = AuthSerializer.from_files(
        key, cert, store, key_password, digest or conf["security_digest"], serializer
    )
    register_serializer(auth)
    return auth
