"""API keys: created once (only the hash is stored), listed, revoked; each bound to a tenant."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from foreman_rt.db import AnyConnection
from foreman_rt.errors import InvalidInput, NotFound
from foreman_rt.values import validate_name

SCOPES = ("enqueue", "read", "work", "cancel")
KEY_PREFIX = "frt_"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key, without its secret."""

    id: int
    tenant: str
    name: str | None
    prefix: str
    scopes: tuple[str, ...]
    rate_per_second: float | None
    burst: int | None
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def validate_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """Known scopes only, at least one."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            f"scopes must be among {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}",
            code="invalid_scope",
        )
    return tuple(dict.fromkeys(scopes))


async def create(
    conn: AnyConnection,
    tenant: str,
    *,
    scopes: tuple[str, ...] = SCOPES,
    name: str | None = None,
    rate_per_second: float | None = None,
    burst: int | None = None,
) -> tuple[str, KeyInfo]:
    """Create a key; returns the secret (shown once) and its stored description."""
    validate_name("tenant", tenant)
    scopes = validate_scopes(scopes)
    if rate_per_second is not None and not rate_per_second > 0:
        raise InvalidInput("rate must be positive", code="invalid_rate")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        "INSERT INTO api_keys (tenant, name, prefix, key_hash, scopes, rate_per_second, burst)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        tenant,
        name,
        secret[:12],
        hash_key(secret),
        list(scopes),
        rate_per_second,
        burst,
    )
    assert row is not None
    return secret, _info(row)


async def list_keys(conn: AnyConnection) -> list[KeyInfo]:
    """Every key, newest first."""
    rows = await conn.fetch("SELECT * FROM api_keys ORDER BY id DESC")
    return [_info(r) for r in rows]


async def revoke(conn: AnyConnection, key_id: int) -> KeyInfo:
    """Revoke a key (takes effect within the service's key cache time, 5 s)."""
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING *",
        key_id,
    )
    if row is None:
        raise NotFound(f"API key {key_id} not found", code="key_not_found")
    return _info(row)


async def live_count(conn: AnyConnection) -> int:
    """How many keys are not revoked."""
    return int(await conn.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"))


def _info(row: object) -> KeyInfo:
    r = dict(row)  # type: ignore[call-overload]  # asyncpg.Record is a mapping at run time
    return KeyInfo(
        id=r["id"],
        tenant=r["tenant"],
        name=r["name"],
        prefix=r["prefix"],
        scopes=tuple(r["scopes"]),
        rate_per_second=r["rate_per_second"],
        burst=r["burst"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
    )
