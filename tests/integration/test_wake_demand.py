"""Insert notifications go out only while some holder waits for them (wake_demand), and the
enqueue counts no longer depend on them: each insert statement appends its counts, folded
exactly into running totals."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import Notifications

from foreman_rt import Client, db
from foreman_rt.demand import Demand
from foreman_rt.sql import query

pytestmark = pytest.mark.db


async def _wake_listener(conn: db.Connection, schema: str) -> Notifications:
    seen = Notifications()
    await conn.add_listener(f"{schema}_wake", seen.on_notify)
    return seen


async def _quiet(seen: Notifications, seconds: float = 0.3) -> list[str]:
    await asyncio.sleep(seconds)
    return seen.unread


async def test_inserts_notify_only_while_a_live_demand_row_covers_their_queue(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    listen = await db.connect(pg_dsn, schema)
    try:
        seen = await _wake_listener(listen, schema)
        await client.enqueue("nobody-waits")
        assert await _quiet(seen) == [], "an insert notified with no demand row"

        await conn.execute(query("demand_arm"), "w-a", ["a"], 60.0, False, False)
        await client.enqueue("other-queue", queue="b")
        assert await _quiet(seen) == [], "demand for queue a woke an insert into queue b"
        await client.enqueue("wanted", queue="a")
        assert json.loads(await seen.next()) == [["a", "wanted", 1, None]]

        # A bulk insert across queues notifies once when any of them is wanted.
        await client.enqueue_many([{"kind": "x", "queue": "a"}, {"kind": "y", "queue": "b"}])
        assert sorted(json.loads(await seen.next())) == [["a", "x", 1, None], ["b", "y", 1, None]]

        await conn.execute("UPDATE wake_demand SET expires_at = now() - interval '2 min'")
        await client.enqueue("expired", queue="a")
        assert await _quiet(seen) == [], "an expired demand row still woke inserts"

        await conn.execute(query("demand_arm"), "w-all", None, 60.0, False, False)
        await client.enqueue("any-queue", queue="zzz")
        assert json.loads(await seen.next()) == [["zzz", "any-queue", 1, None]]

        await conn.execute(query("demand_disarm"), "w-all")
        assert await conn.fetchval("SELECT count(*) FROM wake_demand") == 0  # expired one too
        await client.enqueue("after-disarm", queue="zzz")
        assert await _quiet(seen) == []
    finally:
        await listen.close()


async def test_arming_reports_the_inserts_in_flight_and_settles_when_they_end(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    """The arming race: an insert that looked for demand before the row existed commits later.
    The in-flight list names its transaction, and settled() returns once it has ended."""
    producer = await db.connect(pg_dsn, schema)
    try:
        tx = producer.transaction()
        await tx.start()
        await client.enqueue("racing", connection=producer)
        xid = int(await producer.fetchval("SELECT pg_current_xact_id()::text"))

        demand = Demand(client.pool, "racer", None, 30.0)
        in_flight = await demand.arm()
        assert demand.armed and xid in in_flight

        settle = asyncio.create_task(demand.settled(in_flight, 10.0))
        await asyncio.sleep(0.3)
        assert not settle.done(), "settled() returned while the insert was still in flight"
        await tx.commit()
        await asyncio.wait_for(settle, 2.0)
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'racing'") == 1
        await demand.disarm()
        assert not demand.armed
        assert await conn.fetchval("SELECT count(*) FROM wake_demand") == 0
    finally:
        await producer.close()


async def test_enqueue_totals_are_exact_and_concurrent_folds_never_double_count(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    # Inserts count themselves only while some holder (a running service) exports the counts.
    await client.enqueue("uncounted")
    assert await conn.fetchval("SELECT count(*) FROM enqueue_counts") == 0
    counting = Demand(client.pool, "service-counts", (), 60.0, counts=True)
    await counting.arm()
    listen = await db.connect(pg_dsn, schema)
    seen = await _wake_listener(listen, schema)
    await client.enqueue_many([{"kind": "a", "params": {"n": i}} for i in range(250)])
    for _ in range(5):
        await client.enqueue("b", queue="q2")
    await client.enqueue("a", idempotency_key="k1")
    await client.enqueue("a", idempotency_key="k1")  # duplicate: no new row, not counted
    rolled = await db.connect(pg_dsn, schema)
    try:
        tx = rolled.transaction()
        await tx.start()
        await client.enqueue("a", connection=rolled)
        await tx.rollback()  # rolled back: not counted
    finally:
        await rolled.close()

    async def fold() -> dict[tuple[str, str], int]:
        async with client.pool.acquire() as c:
            return {
                (r["kind"], r["queue"]): r["total"] for r in await c.fetch(query("enqueue_totals"))
            }

    results = await asyncio.gather(*(fold() for _ in range(8)))
    final = await fold()
    assert final == {("a", "default"): 251, ("b", "q2"): 5}
    for r in results:  # each reader saw totals no higher than the truth
        assert all(r.get(k, 0) <= v for k, v in final.items())
    assert await conn.fetchval("SELECT count(*) FROM enqueue_counts") == 0

    await client.enqueue("b", queue="q2")
    assert (await fold())[("b", "q2")] == 6
    assert await _quiet(seen, 0.1) == [], "a counts-only holder must not ask for wake-ups"
    await listen.close()
    await counting.disarm()
    await client.enqueue("b", queue="q2")
    assert (await fold())[("b", "q2")] == 6


async def test_a_crash_emptied_demand_table_is_written_again_on_renew(
    client: Client, conn: db.Connection
) -> None:
    """wake_demand is unlogged: after a crash it is empty. renew() writes the row back."""
    demand = Demand(client.pool, "survivor", ("q",), 30.0)
    await demand.arm()
    await conn.execute("TRUNCATE wake_demand")
    await demand.renew()
    row = await conn.fetchrow("SELECT queues, expires_at > now() AS live FROM wake_demand")
    assert row is not None and row["queues"] == ["q"] and row["live"]
    demand.forget()
    await demand.renew()  # not armed: nothing written
    await conn.execute("TRUNCATE wake_demand")
    await demand.renew()
    assert await conn.fetchval("SELECT count(*) FROM wake_demand") == 0
