"""The Client's pool resets the session of connections a caller acquired; the client's own
statements run on its lane, whose sessions no caller touches."""

from __future__ import annotations

import pytest

from foreman_rt import Client

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
        await client.enqueue("after-the-caller")  # on the lane, not on the caller's session
        async with client.pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == default
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
    finally:
        await client.close()
