"""State-change and progress notifications go out only while some holder listens for them (a
wake_demand row with `events`); cancel requests reach workers whoever listens; and a waiting
client arms its row before it reads, so a change that raced the arming is not missed."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from helpers import Notifications, claim, complete

from foreman_rt import Client, db
from foreman_rt.demand import Demand
from foreman_rt.sql import query

pytestmark = pytest.mark.db


async def _listen(conn: db.Connection, channel: str) -> Notifications:
    seen = Notifications()
    await conn.add_listener(channel, seen.on_notify)
    return seen


async def _quiet(seen: Notifications, seconds: float = 0.3) -> list[str]:
    await asyncio.sleep(seconds)
    return seen.unread


async def test_state_changes_notify_only_while_a_live_row_asks_for_events(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    listen = await db.connect(pg_dsn, schema)
    try:
        events = await _listen(listen, f"{schema}_events")
        await client.enqueue("k")
        # A wake-only holder (a worker with free slots) does not ask for state changes.
        await conn.execute(query("demand_arm"), "worker", None, 60.0, False, False)
        [row] = await claim(conn, "k")
        await complete(conn, row["run_id"])
        assert await _quiet(events) == [], "a claim and a completion notified with no listener"

        await conn.execute(query("demand_arm"), "service", [], 60.0, True, True)
        job = (await client.enqueue("k")).job
        [row] = await claim(conn, "k")
        assert json.loads(await events.next()) == {
            "c": [["k", "default", "running", 1]],
            "j": [[str(job.id), "running"]],
        }
        await conn.execute(
            "UPDATE jobs SET progress_current = 1, progress_total = 2 WHERE run_id = $1",
            row["run_id"],
        )
        assert json.loads(await events.next()) == {"p": [str(job.id)]}
        await complete(conn, row["run_id"])
        assert json.loads(await events.next())["j"] == [[str(job.id), "succeeded"]]

        await conn.execute("UPDATE wake_demand SET expires_at = now() - interval '1 s'")
        await client.enqueue("k")
        [row] = await claim(conn, "k")
        await complete(conn, row["run_id"])
        assert await _quiet(events) == [], "an expired row still asked for state changes"
    finally:
        await listen.close()


async def test_cancel_requests_notify_workers_with_no_events_listener(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    listen = await db.connect(pg_dsn, schema)
    try:
        cancels = await _listen(listen, f"{schema}_cancel")
        running = (await client.enqueue("k")).job
        await claim(conn, "k")
        pending = (await client.enqueue("other")).job
        assert await conn.fetchval("SELECT count(*) FROM wake_demand") == 0

        await client.cancel(pending.id)  # cancelled at once: no worker to tell
        assert await _quiet(cancels, 0.2) == []
        await client.cancel(running.id)
        assert await cancels.next() == str(running.id)
        await client.cancel(running.id)  # already requested: not again
        assert await _quiet(cancels, 0.2) == []
    finally:
        await listen.close()


async def test_wait_sees_a_completion_that_raced_the_arming_of_its_row(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    """A completion whose trigger looked for listeners before the waiting client's row existed
    does not notify, and commits after the client's first read. The client waits for the
    transactions in flight at arming before it reads, so it sees the completion at once rather
    than after its 5 s fallback read."""
    job = (await client.enqueue("k")).job
    [row] = await claim(conn, "k")
    worker = await db.connect(pg_dsn, schema)
    try:
        tx = worker.transaction()
        await tx.start()
        await complete(worker, row["run_id"])  # no row with events yet: this does not notify
        started = time.monotonic()
        waiting = asyncio.create_task(client.wait(job.id, timeout=20))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await tx.commit()
        finished = await asyncio.wait_for(waiting, 20)
        assert finished.status.value == "succeeded"
        assert time.monotonic() - started < 2.0, "the raced completion waited for the fallback"
    finally:
        await worker.close()


async def test_a_waiting_client_holds_its_row_only_while_it_waits(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("k")).job
    waiting = asyncio.create_task(client.wait(job.id, timeout=20))

    async def holders() -> list[bool]:
        rows = await conn.fetch("SELECT events FROM wake_demand WHERE holder LIKE 'wait:%'")
        return [r["events"] for r in rows]

    deadline = time.monotonic() + 5
    while await holders() != [True]:
        assert time.monotonic() < deadline, "the waiting client never armed its row"
        await asyncio.sleep(0.01)
    [row] = await claim(conn, "k")
    await complete(conn, row["run_id"])
    assert (await asyncio.wait_for(waiting, 5)).status.value == "succeeded"
    deadline = time.monotonic() + 5
    while await holders() != []:
        assert time.monotonic() < deadline, "the row stayed after the last waiter left"
        await asyncio.sleep(0.01)


async def test_a_crash_emptied_table_is_armed_again_by_a_waiting_client(
    client: Client, conn: db.Connection
) -> None:
    """After a database crash wake_demand is empty; the waiting client writes its row again
    when its listener reconnects, and the wait still ends on the completion's notification."""
    job = (await client.enqueue("k")).job
    waiting = asyncio.create_task(client.wait(job.id, timeout=30))
    deadline = time.monotonic() + 5
    while not await conn.fetchval("SELECT count(*) FROM wake_demand"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await conn.execute("TRUNCATE wake_demand")
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'foreman-rt wait'"
    )
    deadline = time.monotonic() + 10
    while not await conn.fetchval("SELECT count(*) FROM wake_demand WHERE events"):
        assert time.monotonic() < deadline, "the row was not written again after reconnecting"
        await asyncio.sleep(0.02)
    [row] = await claim(conn, "k")
    await complete(conn, row["run_id"])
    assert (await asyncio.wait_for(waiting, 5)).status.value == "succeeded"


async def test_demand_rows_without_events_leave_state_changes_silent(
    client: Client, conn: db.Connection
) -> None:
    """The Demand helper writes `events` as asked."""
    wake = Demand(client.pool, "w", None, 30.0)
    listening = Demand(client.pool, "s", (), 30.0, counts=True, events=True)
    await wake.arm()
    await listening.arm()
    rows = await conn.fetch("SELECT holder, events, counts FROM wake_demand ORDER BY holder")
    assert [tuple(r) for r in rows] == [("s", True, True), ("w", False, False)]
