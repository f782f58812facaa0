"""The SQL enqueue functions, called from a session that knows nothing about foreman-rt."""

from __future__ import annotations

import asyncpg
import pytest

from foreman_rt import Client

pytestmark = pytest.mark.db


async def test_enqueue_function_works_with_public_search_path(
    pg_dsn: str, schema: str, client: Client
) -> None:
    raw = await asyncpg.connect(pg_dsn)
    try:
        assert schema not in await raw.fetchval("SHOW search_path")
        job_id = await raw.fetchval(f"SELECT \"{schema}\".enqueue('k', '{{\"a\":1}}'::jsonb)")
    finally:
        await raw.close()
    assert isinstance(job_id, int)
    job = await client.get(job_id)
    assert (job.kind, job.params, job.queue, job.status) == ("k", {"a": 1}, "default", "pending")


async def test_enqueue_function_with_same_key_returns_same_id(pg_dsn: str, schema: str) -> None:
    raw = await asyncpg.connect(pg_dsn)
    try:
        sql = f"SELECT \"{schema}\".enqueue('k', '{{}}'::jsonb, idempotency_key => 'x')"
        assert await raw.fetchval(sql) == await raw.fetchval(sql)
    finally:
        await raw.close()


async def test_enqueue_job_with_key_twice_returns_created_false(pg_dsn: str, schema: str) -> None:
    raw = await asyncpg.connect(pg_dsn)
    try:
        sql = (
            f"SELECT e.created, (e.job).id, (e.job).tenant "
            f"FROM \"{schema}\".enqueue_job('k', p_idempotency_key => 'once', "
            f"p_tenant => 'acme') AS e"
        )
        first = await raw.fetchrow(sql)
        second = await raw.fetchrow(sql)
        count = await raw.fetchval(f'SELECT count(*) FROM "{schema}".jobs')
    finally:
        await raw.close()
    assert first is not None and second is not None
    assert first["created"] is True
    assert second["created"] is False
    assert second["id"] == first["id"]
    assert second["tenant"] == "acme"
    assert count == 1
