"""Who may use the dashboard: HTTP basic credentials, and actions only where they are safe.

With credentials configured (``--basic-auth user:pass[,user2:pass2]``, as Flower's flag, or
``CELERIAC_WEB_BASIC_AUTH``) every request must carry one of them (401 otherwise). With
none, anyone who reaches the server may read, but actions (submit, revoke) are refused
(403) unless the server listens on a loopback address only: a dashboard bound to a public
interface without credentials must not run tasks for strangers. Browsers' cross-site
requests may never run actions (:meth:`Access.refusal`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ENV_BASIC_AUTH",
    "ENV_TOKEN",
    "HEALTHCHECK",
    "Access",
    "AuthMiddleware",
    "is_loopback",
    "parse_basic_auth",
]

ENV_BASIC_AUTH = "CELERIAC_WEB_BASIC_AUTH"
ENV_TOKEN = "CELERIAC_WEB_TOKEN"

HEALTHCHECK = "/healthcheck"
"""The one path that answers without credentials: a container's or balancer's probe."""

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def parse_basic_auth(spec: str) -> frozenset[tuple[str, str]]:
    """``user:pass[,user2:pass2]`` as pairs; ValueError naming an entry without a colon."""
    pairs = set()
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        user, colon, password = entry.partition(":")
        if not colon or not user:
            raise ValueError(f"basic auth entry {entry.split(':')[0]!r} is not user:password")
        pairs.add((user, password))
    return frozenset(pairs)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """The credentials a dashboard asks for, and the address it was bound to (if known)."""

    credentials: frozenset[tuple[str, str]] = frozenset()
    address: str | None = None
    """The bind address; None when mounted in another app (the request's server address
    decides then)."""
    tokens: frozenset[str] = frozenset()
    """Bearer tokens that pass as well as a user and password (scripts, CI, probes)."""

    @classmethod
    def configure(
        cls, basic_auth: str | None, address: str | None, token: str | None = None
    ) -> Access:
        """From the flags' values, else ``CELERIAC_WEB_BASIC_AUTH`` and ``CELERIAC_WEB_TOKEN``
        (tokens comma-separated, as users)."""
        spec = basic_auth if basic_auth is not None else os.environ.get(ENV_BASIC_AUTH, "")
        tokens = token if token is not None else os.environ.get(ENV_TOKEN, "")
        found = frozenset(filter(None, (part.strip() for part in tokens.split(","))))
        return cls(parse_basic_auth(spec), address, found)

    @property
    def protected(self) -> bool:
        """Whether any credentials are configured (then every request needs them)."""
        return bool(self.credentials or self.tokens)

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries configured credentials."""
        if not self.protected:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip().encode()
            return any(hmac.compare_digest(given, known.encode()) for known in self.tokens)
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        found = False
        for known_user, known_password in self.credentials:
            same_user = hmac.compare_digest(user.encode(), known_user.encode())
            same_password = hmac.compare_digest(password.encode(), known_password.encode())
            found |= same_user and same_password
        return found

    def refusal(self, scope: Scope) -> str | None:
        """Why the request may not run an action (submit, revoke); None when it may.

        A browser's cross-site request never may (another site's page must not make a
        developer's browser run tasks: ``Origin`` must match ``Host``). Without credentials,
        the server must listen on loopback only, and the ``Host`` must name a loopback
        address (a page whose own name was pointed at 127.0.0.1 must not pass).
        """
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers") or []
        }
        host = headers.get("host", "")
        origin = headers.get("origin")
        if headers.get("sec-fetch-site") == "cross-site" or (
            origin is not None and urlsplit(origin).netloc != host
        ):
            return "a cross-site request may not run actions"
        if self.protected:
            return None  # the middleware checked them
        if not self._on_loopback(scope):
            return "actions need --basic-auth when the dashboard is not bound to loopback"
        if not is_loopback(urlsplit(f"//{host}").hostname):
            return f"actions without --basic-auth need a loopback Host, not {host!r}"
        return None

    def _on_loopback(self, scope: Scope) -> bool:
        if self.address is not None:
            return is_loopback(self.address)
        server = scope.get("server")
        return is_loopback(server[0] if server else None)


class AuthMiddleware:
    """Answers 401 to a request without valid credentials when any are configured."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.access.protected or scope["path"] == HEALTHCHECK:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization")
        if self.access.allows(header.decode("latin-1") if header else None):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Basic realm="celeriac"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"error": "credentials required"}'})
