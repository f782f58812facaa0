"""The Client's pool resets the session of connections a caller acquired, and skips that round
trip for foreman-rt's own single statements."""

from __future__ import annotations

import pytest

from foreman_rt import Client, db

pytestmark = pytest.mark.db


async def test_a_callers_session_changes_do_not_leak_to_the_next_acquirer(
    pg_dsn: str, schema: str
) -> None:
    client = await Client.connect(pg_dsn, schema, min_size=1, max_size=1)
    try:
        async with client.pool.acquire() as conn:
            default = await conn.fetchval("SHOW statement_timeout")
            await conn.execute("SET statement_timeout = '1234ms'")
            await conn.execute("LISTEN some_channel")
        await client.enqueue("after-the-caller")  # the same (only) connection, own statement
        async with client.pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == default
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
    finally:
        await client.close()


async def test_own_statements_release_without_the_reset(pg_dsn: str, schema: str) -> None:
    pool = await db.create_pool(pg_dsn, schema, min_size=1, max_size=1)
    try:
        with db.own_statement():
            async with pool.acquire() as conn:
                await conn.execute("SET statement_timeout = '4321ms'")
        async with pool.acquire() as conn:  # kept: no reset ran inside own_statement()
            assert await conn.fetchval("SHOW statement_timeout") == "4321ms"
        async with pool.acquire() as conn:  # that release (outside) did reset it
            assert await conn.fetchval("SHOW statement_timeout") != "4321ms"
    finally:
        await pool.close()
