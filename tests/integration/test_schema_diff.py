"""sql/schema.sql (the declared current schema) must equal what the migrations build."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from foreman_rt import db, migrations

pytestmark = pytest.mark.db

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "sql" / "schema.sql"
LEDGER = "schema_migrations"  # written by the migration runner, not declared

CATALOG: dict[str, str] = {
    "tables": """
        SELECT c.relname, c.relkind::text, c.reloptions
        FROM pg_class c
        WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relname <> ALL ($2::text[])
        ORDER BY 1
    """,
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text,
               a.attgenerated::text
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> ALL ($2::text[])
        ORDER BY 1, 2
    """,
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.connamespace = $1::regnamespace AND c.relname <> ALL ($2::text[])
        ORDER BY 1, 2
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef
        FROM pg_indexes
        WHERE schemaname = $1 AND tablename <> ALL ($2::text[])
        ORDER BY 1, 2
    """,
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal
          AND c.relname <> ALL ($2::text[])
        ORDER BY 1, 2
    """,
    "functions": """
        SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               l.lanname, p.prokind::text, p.provolatile::text, p.prosecdef, p.proconfig,
               p.prosrc
        FROM pg_proc p
        JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = $1::regnamespace AND $2::text[] IS NOT NULL
        ORDER BY 1, 2
    """,
}


async def describe(conn: db.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """The catalog description of `schema`, with its own name replaced by <schema>."""

    def norm(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(f'"{schema}"', "<schema>").replace(schema, "<schema>")
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    out = {}
    for part, sql in CATALOG.items():
        rows = await conn.fetch(sql, schema, [LEDGER])
        out[part] = [tuple(norm(v) for v in row.values()) for row in rows]
    return out


@pytest.fixture
async def two_schemas(pg_dsn: str) -> AsyncIterator[tuple[str, str]]:
    token = secrets.token_hex(5)
    declared, migrated = f"d_{token}", f"m_{token}"
    yield declared, migrated
    conn = await db.connect(pg_dsn, "public")
    try:
        for name in (declared, migrated):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def test_declared_schema_file_says_what_it_is() -> None:
    head = SCHEMA_SQL.read_text(encoding="utf-8").splitlines()[:10]
    assert any("declared current schema" in line.lower() for line in head)
    assert any("every new migration" in line.lower() for line in head)


async def test_declared_schema_equals_migrated_schema(
    pg_dsn: str, two_schemas: tuple[str, str]
) -> None:
    declared, migrated = two_schemas
    conn = await db.connect(pg_dsn, declared)
    try:
        async with conn.transaction():
            await conn.execute(f'CREATE SCHEMA "{declared}"')
            await conn.execute("SELECT set_config('search_path', $1, true)", declared)
            await conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        await migrations.migrate(conn, migrated)
        await conn.execute("SET search_path = public")
        want = await describe(conn, migrated)
        got = await describe(conn, declared)
    finally:
        await conn.close()

    assert want["tables"], "the migrations created no tables"
    assert want["functions"], "the migrations created no functions"
    for part in CATALOG:
        assert got[part] == want[part], f"sql/schema.sql and the migrations differ in {part}"
