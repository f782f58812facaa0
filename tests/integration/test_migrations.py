"""migrate and status against a real PostgreSQL: idempotence, checksums, concurrency."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from foreman_rt import Client, ConfigurationError, db, migrations

pytestmark = pytest.mark.db


@pytest.fixture
async def fresh_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A schema name nothing has created yet; dropped afterwards if something did."""
    name = "m_" + secrets.token_hex(6)
    yield name
    conn = await db.connect(pg_dsn, "public")
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def test_second_migrate_is_a_no_op(schema: str, conn: db.Connection) -> None:
    assert await migrations.migrate(conn, schema) == []
    assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(
        migrations.load_migrations()
    )


async def test_status_lists_applied_migrations_and_nothing_pending(
    schema: str, conn: db.Connection
) -> None:
    state = await migrations.status(conn, schema)
    available = migrations.load_migrations()
    assert [(a.version, a.name, a.checksum) for a in state.applied] == [
        (m.version, m.name, m.checksum) for m in available
    ]
    assert state.pending == []


async def test_status_of_unmigrated_schema_lists_everything_pending(
    pg_dsn: str, fresh_schema: str
) -> None:
    conn = await db.connect(pg_dsn, fresh_schema)
    try:
        state = await migrations.status(conn, fresh_schema)
        assert not await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", fresh_schema
        )
    finally:
        await conn.close()
    assert state.applied == []
    assert state.pending == migrations.load_migrations()


async def test_changed_checksum_makes_migrate_raise_migration_changed(
    schema: str, conn: db.Connection
) -> None:
    await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(ConfigurationError) as info:
        await migrations.migrate(conn, schema)
    assert info.value.code == "migration_changed"
    with pytest.raises(ConfigurationError) as info:
        await migrations.status(conn, schema)
    assert info.value.code == "migration_changed"


async def test_unknown_applied_migration_makes_migrate_raise_migration_unknown(
    schema: str, conn: db.Connection
) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')"
    )
    with pytest.raises(ConfigurationError) as info:
        await migrations.migrate(conn, schema)
    assert info.value.code == "migration_unknown"


async def test_concurrent_migrate_of_new_schema_applies_exactly_once(
    pg_dsn: str, fresh_schema: str
) -> None:
    conns = [await db.connect(pg_dsn, fresh_schema) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c, fresh_schema) for c in conns))
        ledger = await conns[0].fetch("SELECT version FROM schema_migrations")
    finally:
        for c in conns:
            await c.close()
    expected = migrations.load_migrations()
    assert sorted(len(r) for r in results) == [0, 0, len(expected)]
    assert [r["version"] for r in ledger] == [m.version for m in expected]


async def test_client_on_unmigrated_schema_raises_schema_not_migrated(
    pg_dsn: str, fresh_schema: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        await Client.connect(pg_dsn, fresh_schema)
    assert info.value.code == "schema_not_migrated"


async def test_client_with_invalid_schema_name_raises_invalid_schema(pg_dsn: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        await Client.connect(pg_dsn, "Bad-Name")
    assert info.value.code == "invalid_schema"
