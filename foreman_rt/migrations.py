"""Numbered SQL migrations, applied in order under an advisory lock and recorded with checksums."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from foreman_rt.config import quote_ident, validate_schema
from foreman_rt.db import Connection
from foreman_rt.errors import ConfigurationError
from foreman_rt.sql import sql_root

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One file under sql/migrations."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Applied:
    """A migration recorded in <schema>.schema_migrations."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class Status:
    """What is applied and what is pending in one schema."""

    applied: list[Applied]
    pending: list[Migration]


def load_migrations() -> list[Migration]:
    """Every migration file, in version order."""
    folder = sql_root() / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def _lock(conn: Connection, schema: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('foreman-rt migrate ' || $1::text, 0))",
        schema,
    )


async def _read_applied(conn: Connection, schema: str) -> list[Applied]:
    exists = await conn.fetchval(
        "SELECT to_regclass(quote_ident($1::text) || '.schema_migrations') IS NOT NULL", schema
    )
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
    )
    return [Applied(**dict(r)) for r in rows]


def plan(applied: list[Applied], available: list[Migration]) -> list[Migration]:
    """The pending migrations; refuses changed, unknown or out-of-order applied files."""
    by_version = {m.version: m for m in available}
    for done in applied:
        mine = by_version.get(done.version)
        if mine is None:
            raise ConfigurationError(
                f"the database has migration {done.version:04d}_{done.name}, which this version "
                "of foreman-rt does not know: upgrade foreman-rt",
                code="migration_unknown",
            )
        if mine.checksum != done.checksum:
            raise ConfigurationError(
                f"migration {done.version:04d}_{done.name}.sql changed after it was applied "
                f"(recorded {done.checksum[:12]}, file {mine.checksum[:12]}): restore the "
                "original file and add a new migration instead",
                code="migration_changed",
            )
    done_versions = {a.version for a in applied}
    return [m for m in available if m.version not in done_versions]


async def status(conn: Connection, schema: str) -> Status:
    """Applied and pending migrations of `schema` (read-only)."""
    validate_schema(schema)
    async with conn.transaction():
        await conn.execute("SELECT set_config('search_path', $1::text, true)", schema)
        applied = await _read_applied(conn, schema)
    return Status(applied=applied, pending=plan(applied, load_migrations()))


async def migrate(conn: Connection, schema: str, upto: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to version `upto`, if given) to `schema` in one
    transaction; returns what it applied."""
    async with conn.transaction():
        await _lock(conn, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute("SELECT set_config('search_path', $1::text, true)", schema)
        pending = plan(await _read_applied(conn, schema), load_migrations())
        if upto is not None:
            pending = [m for m in pending if m.version <= upto]
        await conn.execute(_LEDGER)
        for migration in pending:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    return pending
