"""Enqueue against a real PostgreSQL: idempotency, transactions and notifications, bulk."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pytest
from cases import AWARE, INVALID
from helpers import count_jobs, listening

from foreman_rt import Client, InvalidInput, JobSpec, JobStatus, NotFound, db

pytestmark = pytest.mark.db


async def test_enqueue_returns_new_pending_job_with_created_true(client: Client) -> None:
    res = await client.enqueue("send-email", {"to": "a@example.com"}, queue="mail", priority=5)
    assert res.created is True
    job = res.job
    assert job.id > 0
    assert (job.kind, job.queue, job.tenant, job.priority) == ("send-email", "mail", "default", 5)
    assert job.params == {"to": "a@example.com"}
    assert job.status is JobStatus.PENDING
    assert (job.attempt_count, job.max_attempts) == (0, 3)
    assert job.completed_at is None and job.started_at is None
    assert await client.get(job.id) == job


async def test_enqueue_stores_every_option(client: Client, conn: db.Connection) -> None:
    res = await client.enqueue(
        "k",
        [1, "two"],
        scheduled_at=AWARE,
        max_attempts=7,
        idempotency_key="key-1",
        tenant="acme",
        service="billing",
        backoff=(2, 30),
    )
    job = res.job
    assert job.scheduled_at == AWARE
    assert (job.max_attempts, job.idempotency_key, job.tenant, job.service) == (
        7,
        "key-1",
        "acme",
        "billing",
    )
    backoff = await conn.fetchrow(
        "SELECT backoff_base_seconds, backoff_max_seconds FROM jobs WHERE id = $1", job.id
    )
    assert backoff is not None
    assert tuple(backoff) == (2.0, 30.0)


async def test_delay_is_measured_from_the_database_clock(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("k", delay=timedelta(hours=1))).job
    ahead = await conn.fetchval(
        "SELECT extract(epoch FROM $1::timestamptz - now())", job.scheduled_at
    )
    assert 3590 < ahead <= 3600


async def test_duplicate_key_returns_existing_job_with_created_false(client: Client) -> None:
    first = await client.enqueue("k", {"v": 1}, idempotency_key="order-1")
    second = await client.enqueue("k", {"v": 2}, idempotency_key="order-1")
    assert first.created is True
    assert second.created is False
    assert second.job.id == first.job.id
    assert second.job.params == {"v": 1}  # the first request wins


async def test_same_key_for_other_kind_or_tenant_is_a_new_job(client: Client) -> None:
    a = await client.enqueue("k", idempotency_key="x")
    b = await client.enqueue("other", idempotency_key="x")
    c = await client.enqueue("k", idempotency_key="x", tenant="acme")
    assert all(r.created for r in (a, b, c))
    assert len({a.job.id, b.job.id, c.job.id}) == 3


async def test_fifty_concurrent_callers_with_one_key_create_exactly_one_job(
    pg_dsn: str, schema: str, conn: db.Connection
) -> None:
    async with await Client.connect(pg_dsn, schema, min_size=20, max_size=25) as client:
        results = await asyncio.gather(
            *(client.enqueue("k", {"n": n}, idempotency_key="race") for n in range(50))
        )
    assert sum(r.created for r in results) == 1
    assert len({r.job.id for r in results}) == 1
    assert await count_jobs(conn) == 1


async def test_enqueue_in_rolled_back_transaction_leaves_no_row_and_no_wake(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    raw = await asyncpg.connect(pg_dsn)  # plain connection: no codecs, search_path public
    try:
        async with listening(pg_dsn, schema, f"{schema}_wake") as wake:
            tx = raw.transaction()
            await tx.start()
            res = await client.enqueue("rolled-back", connection=raw)
            assert res.created
            with pytest.raises(NotFound):
                await client.get(res.job.id)  # invisible outside the transaction
            await tx.rollback()
            # Notifications arrive in commit order: if the marker's is the first one, the
            # rolled-back enqueue sent none.
            await client.enqueue("marker")
            assert json.loads(await wake.next()) == [["default", "marker", 1, None]]
            assert wake.unread == []
    finally:
        await raw.close()
    with pytest.raises(NotFound):
        await client.get(res.job.id)
    assert await count_jobs(conn) == 1


async def test_enqueue_in_committed_transaction_wakes_workers_once(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    async with listening(pg_dsn, schema, f"{schema}_wake") as wake:
        tx_conn = await db.connect(pg_dsn, schema)
        try:
            async with tx_conn.transaction():
                res = await client.enqueue("committed", {"a": 1}, connection=tx_conn)
                await tx_conn.execute("SELECT 1")  # more work in the same transaction
                assert wake.payloads == []
            await asyncio.wait_for(wake.arrived.wait(), 5)
        finally:
            await tx_conn.close()
        assert json.loads(await wake.next()) == [["default", "committed", 1, None]]
        await client.enqueue("marker")
        assert json.loads(await wake.next()) == [["default", "marker", 1, None]]
        assert wake.unread == []
    assert (await client.get(res.job.id)).params == {"a": 1}


async def test_enqueue_many_of_5000_returns_ids_in_input_order(
    client: Client, conn: db.Connection
) -> None:
    specs = [{"kind": "bulk", "params": {"i": i}, "priority": i % 7} for i in range(5000)]
    out = await client.enqueue_many(specs)
    assert len(out) == 5000
    assert all(e.created for e in out)
    rows = await conn.fetch("SELECT id, (params->>'i')::int AS i FROM jobs")
    by_id = {r["id"]: r["i"] for r in rows}
    assert [by_id[e.id] for e in out] == list(range(5000))


async def test_enqueue_many_resolves_duplicates_to_existing_ids(
    client: Client, conn: db.Connection
) -> None:
    before = await client.enqueue("k", idempotency_key="old")
    out = await client.enqueue_many(
        [
            {"kind": "k", "idempotency_key": "old"},
            {"kind": "k", "idempotency_key": "new"},
            JobSpec.build("k", idempotency_key="new"),
            {"kind": "k"},
            {"kind": "k", "idempotency_key": "old", "tenant": "acme"},
            {"kind": "k", "idempotency_key": "new"},
        ]
    )
    assert [e.created for e in out] == [False, True, False, True, True, False]
    assert out[0].id == before.job.id
    assert out[1].id == out[2].id == out[5].id
    assert len({out[0].id, out[1].id, out[3].id, out[4].id}) == 4
    assert await count_jobs(conn) == 4


async def test_enqueue_many_of_nothing_returns_empty_list(client: Client) -> None:
    assert await client.enqueue_many([]) == []


async def test_enqueue_many_with_one_invalid_item_writes_nothing(
    client: Client, conn: db.Connection
) -> None:
    with pytest.raises(InvalidInput) as info:
        await client.enqueue_many([{"kind": "ok"}, {"kind": "ok", "priority": 10**6}])
    assert info.value.code == "invalid_priority"
    with pytest.raises(InvalidInput):
        await client.enqueue_many([{"params": {}}])
    assert await count_jobs(conn) == 0


async def test_every_invalid_enqueue_raises_its_code_and_writes_nothing(
    client: Client, conn: db.Connection
) -> None:
    # One schema for all cases (a fresh one each would cost a migration per case).
    wrong = []
    for name, kind, params, options, code in INVALID:
        try:
            await client.enqueue(kind, params, **options)
        except InvalidInput as exc:
            if exc.code != code:
                wrong.append(f"{name}: code {exc.code!r}, expected {code!r}")
        else:
            wrong.append(f"{name}: accepted")
    assert wrong == []
    assert await count_jobs(conn) == 0


async def test_an_insert_on_a_connection_with_another_search_path_wakes_this_schema(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    # The insert trigger pins its schema (SET search_path FROM CURRENT): a caller's connection
    # whose search_path is public must still reach this schema's demand rows and channel.
    raw = await asyncpg.connect(pg_dsn)
    try:
        assert await raw.fetchval("SELECT current_schema()") == "public"
        async with listening(pg_dsn, schema, f"{schema}_wake") as wake:
            await client.enqueue("from-public", connection=raw)
            assert json.loads(await wake.next()) == [["default", "from-public", 1, None]]
    finally:
        await raw.close()
