"""Fixtures: one real PostgreSQL per session (see tests/pg.py), one fresh schema per test."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import postgres

from foreman_rt import Client, db, migrations


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """The DSN of the session's PostgreSQL."""
    with postgres() as (dsn, source):
        os.environ["FOREMAN_TEST_SOURCE"] = source
        yield dsn


def pytest_report_header() -> str:
    """Say which PostgreSQL the run will use."""
    if os.environ.get("FOREMAN_TEST_DSN"):
        return "postgres: FOREMAN_TEST_DSN"
    return "postgres: testcontainers if Docker answers, else embedded"


@pytest.fixture
async def schema(pg_dsn: str) -> AsyncIterator[str]:
    """A freshly migrated schema of its own for one test; dropped afterwards."""
    name = "t_" + secrets.token_hex(6)
    conn = await db.connect(pg_dsn, name)
    try:
        await migrations.migrate(conn, name)
        yield name
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def client(pg_dsn: str, schema: str) -> AsyncIterator[Client]:
    """A client on the test's schema."""
    c = await Client.connect(pg_dsn, schema)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def conn(pg_dsn: str, schema: str) -> AsyncIterator[db.Connection]:
    """A raw connection in the test's schema, for assertions in SQL."""
    c = await db.connect(pg_dsn, schema)
    try:
        yield c
    finally:
        await c.close()
