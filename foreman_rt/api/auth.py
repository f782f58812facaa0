"""Who is calling: a bearer API key (bound to a tenant, with scopes and a rate limit), or, when
no key exists at all, a loopback client acting as the `default` tenant."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from foreman_rt.db import Pool
from foreman_rt.errors import ForemanError
from foreman_rt.keys import SCOPES, hash_key, live_count
from foreman_rt.sql import query

CACHE_SECONDS = 5.0


class AuthError(ForemanError):
    """Missing, unknown or insufficient credentials."""

    code = "unauthorized"
    status = 401


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: its tenant, scopes, and the key that identifies it (None: keyless)."""

    tenant: str
    scopes: frozenset[str]
    key_id: int | None
    rate: float | None = None
    burst: int | None = None

    def require(self, scope: str) -> None:
        """Raise 403 unless the caller has `scope`."""
        if scope not in self.scopes:
            raise AuthError(
                f"this API key lacks the {scope!r} scope", code="forbidden_scope", status=403
            )


KEYLESS = Principal(tenant="default", scopes=frozenset(SCOPES), key_id=None)


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and in-process test clients."""
    if host in (None, "testclient", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Resolves Authorization headers to principals, caching lookups for a few seconds."""

    def __init__(self, pool: Pool, *, insecure_no_auth: bool = False) -> None:
        self._pool = pool
        self._insecure = insecure_no_auth
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._keys_exist: tuple[float, bool] = (0.0, False)

    async def keys_exist(self) -> bool:
        """Whether any live key exists (cached)."""
        stamp, exists = self._keys_exist
        if time.monotonic() - stamp > CACHE_SECONDS:
            async with self._pool.acquire() as conn:
                exists = await live_count(conn) > 0
            self._keys_exist = (time.monotonic(), exists)
        return exists

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Principal:
        """The caller's principal, or AuthError."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Authorization must be 'Bearer <api key>'", code="unauthorized")
            principal = await self._lookup(token.strip())
            if principal is None:
                raise AuthError("unknown or revoked API key", code="invalid_api_key")
            return principal
        if await self.keys_exist():
            raise AuthError(
                "this service requires an API key: send 'Authorization: Bearer <key>'",
                code="unauthorized",
            )
        if self._insecure or is_loopback(client_host):
            return KEYLESS
        raise AuthError(
            "no API keys are configured, so only loopback clients are served; create one with "
            "`foreman-rt keys create --tenant T`",
            code="loopback_only",
            status=403,
        )

    async def _lookup(self, token: str) -> Principal | None:
        digest = hash_key(token)
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        row = await self._pool.fetchrow(query("key_lookup"), digest)
        principal = None
        if row is not None:
            principal = Principal(
                tenant=row["tenant"],
                scopes=frozenset(row["scopes"]),
                key_id=row["id"],
                rate=row["rate_per_second"],
                burst=row["burst"],
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic(), principal)
        return principal
