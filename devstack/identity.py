"""A local managed-identity endpoint speaking App Service's protocol (api-version 2019-08-01).

The real ``azure-identity`` library gets its tokens here when ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` point at it, exactly as on App Service and Azure Functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"
SYSTEM_IDENTITY = "00000000-0000-0000-0000-000000000000"


def principal_of(client_id: str | None) -> str:
    """The object (principal) id of the local identity with ``client_id``: a federated
    credential names it, not the client id, as in Entra ID."""
    if client_id is None:
        return SYSTEM_IDENTITY
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"managed-identity/{client_id}"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class IssuedToken:
    """What the authority remembers about a token it issued."""

    resource: str
    client_id: str | None
    issued_at: float
    expires_at: float
    object_id: str = SYSTEM_IDENTITY
    """The principal the token was issued to (``oid``)."""
    tenant: str = TENANT_ID
    """The tenant the token is for: the identity's home tenant, or a customer tenant the
    multi-tenant app signed in to (``devstack.directory``)."""


class TokenAuthority:
    """Issues opaque bearer tokens and decides whether one is valid for an audience."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self._tokens: dict[str, IssuedToken] = {}
        self._revoked_before = 0.0
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self.issued = 0
        self.issued_for: Counter[str] = Counter()

    def issue(
        self, resource: str, client_id: str | None, tenant: str = TENANT_ID
    ) -> tuple[str, IssuedToken]:
        """Mint a token for ``resource`` in ``tenant``.

        Tokens are shaped like Entra ID access tokens (a JWT with ``aud``, ``iss``, ``nbf``,
        ``exp``), which is what Azurite's OAuth mode checks; the simulator instead looks the
        token up in this authority's own table.
        """
        now = time.time()
        info = IssuedToken(
            resource.rstrip("/"),
            client_id,
            now,
            now + self.lifetime,
            principal_of(client_id),
            tenant,
        )
        claims = {
            "aud": info.resource,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": int(now),
            "nbf": int(now) - 60,
            "exp": int(info.expires_at),
            "tid": tenant,
            "appid": client_id or SYSTEM_IDENTITY,
            "oid": info.object_id,
            "jti": secrets.token_hex(8),
        }
        token = ".".join(
            _b64(part)
            for part in (
                json.dumps({"alg": "HS256", "typ": "JWT"}).encode(),
                json.dumps(claims).encode(),
            )
        )
        token += "." + _b64(hmac.new(self._key, token.encode(), hashlib.sha256).digest())
        with self._lock:
            self._tokens[token] = info
            self.issued += 1
            self.issued_for[info.resource] += 1
        return token, info

    def revoke_all(self) -> None:
        """Make every token issued so far invalid (Graph then answers 401)."""
        with self._lock:
            self._revoked_before = time.time()

    def lookup(self, token: str) -> IssuedToken | None:
        """What this authority issued ``token`` as (None: not one of its tokens)."""
        with self._lock:
            return self._tokens.get(token)

    def problem(self, token: str, audience: str) -> str | None:
        """Return why ``token`` is not valid for ``audience``, or None when it is."""
        with self._lock:
            info = self._tokens.get(token)
            revoked_before = self._revoked_before
        if info is None:
            return "the token was not issued by this tenant"
        if info.issued_at <= revoked_before:
            return "the token was revoked"
        if info.expires_at <= time.time():
            return "the token has expired"
        if info.resource != audience.rstrip("/"):
            return f"the token's audience {info.resource} is not {audience}"
        return None


def identity_app(authority: TokenAuthority, header_secret: str) -> web.Application:
    """Return the aiohttp application of the managed-identity endpoint (path ``/msi/token``)."""

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != header_secret:
            return web.json_response(
                {
                    "error": "invalid_request",
                    "error_description": "X-IDENTITY-HEADER is missing or wrong",
                },
                status=400,
            )
        if request.query.get("api-version") != "2019-08-01":
            return web.json_response(
                {"error": "invalid_request", "error_description": "unsupported api-version"},
                status=400,
            )
        resource = request.query.get("resource")
        if not resource:
            return web.json_response(
                {"error": "invalid_request", "error_description": "resource is required"},
                status=400,
            )
        client_id = request.query.get("client_id")
        value, info = authority.issue(resource, client_id)
        return web.json_response(
            {
                "access_token": value,
                "expires_on": str(int(info.expires_at)),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id or SYSTEM_IDENTITY,
            }
        )

    app = web.Application()
    app.router.add_get("/msi/token", token)
    return app
