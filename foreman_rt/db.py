"""Connections: every foreman-rt connection has search_path set to its schema and a jsonb codec
that takes JSON text in and gives Python values out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from foreman_rt.config import validate_schema
from foreman_rt.errors import ConfigurationError, DatabaseUnavailable

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
AnyConnection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
)


# The worker's sessions plan without sequential scans. Every statement a worker runs reaches
# jobs by an index, but a plan that the session caches while the table is small (a new
# installation, or right after a truncate) scans it, and keeps scanning it as finished jobs pile
# up, until statistics change. Only pools that run nothing but worker statements get this: the
# worker's own, and the service's pool for HTTP workers and maintenance.
WORKER_PLANNER = {"enable_seqscan": "off"}


def server_settings(
    schema: str, application_name: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Session settings for a connection that works in `schema` (plus `extra` ones)."""
    return {
        "search_path": validate_schema(schema),
        "application_name": application_name,
        "jit": "off",
        **(extra or {}),
    }


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_encode_json, decoder=decode_json, schema="pg_catalog", format="text"
    )


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_json(text: str) -> Any:
    """jsonb text to Python values, as json.loads would give them. PostgreSQL's jsonb output has
    nothing around the value, so this calls json's C scanner directly: json.loads first matches
    whitespace twice with regular expressions, which cost more than scanning a job's params."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)  # not JSON: raise json's own error
    if end != len(text):
        return json.loads(text)
    return value


def _encode_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


async def connect(
    dsn: str, schema: str, *, application_name: str = "foreman-rt", timeout: float = 10.0
) -> Connection:
    """One connection in `schema` (used for LISTEN and migrations)."""
    try:
        conn = await asyncpg.connect(
            dsn, server_settings=server_settings(schema, application_name), timeout=timeout
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise _unavailable(exc) from exc
    except ValueError as exc:
        raise ConfigurationError(f"invalid DSN: {exc}", code="invalid_dsn") from exc
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = "foreman-rt",
    reset_session: bool = True,
    settings: Mapping[str, str] | None = None,
) -> Pool:
    """A connection pool in `schema`. `reset_session=False` skips asyncpg's session reset
    (RESET ALL, UNLISTEN *, ...: one round trip per release) for pools only foreman-rt uses;
    an open transaction is still rolled back. `settings`: more session settings."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=None if reset_session else _keep_session,
            server_settings=server_settings(schema, application_name, settings),
            timeout=10.0,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise _unavailable(exc) from exc
    except ValueError as exc:
        raise ConfigurationError(f"invalid DSN: {exc}", code="invalid_dsn") from exc
    assert pool is not None
    return pool


async def _keep_session(_conn: Connection) -> None:
    """Nothing to reset: foreman-rt's own pool connections never change session state."""


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"cannot reach PostgreSQL ({type(exc).__name__}: {exc}); check the DSN and that the "
        "server is running",
        code="database_unavailable",
    )


async def check_schema(conn: AnyConnection, schema: str) -> int:
    """The schema's migration version; ConfigurationError if it was never migrated."""
    exists = await conn.fetchval(
        "SELECT to_regclass(quote_ident($1::text) || '.schema_migrations') IS NOT NULL", schema
    )
    if not exists:
        raise ConfigurationError(
            f"schema {schema!r} has no foreman-rt tables: run `foreman-rt migrate` first",
            code="schema_not_migrated",
        )
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
