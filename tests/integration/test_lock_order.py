"""A worker renews the leases of runs whose outcome is still buffered while its completer
writes them, so a heartbeat and a completion (or a failure) often update the same rows at
once. Each of those statements must lock its rows in job id order, whatever order its caller
passes them in: two statements that lock the same rows in opposite orders deadlock, and
PostgreSQL breaks the deadlock only after deadlock_timeout (a stalled flush and a retry)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from foreman_rt import Client, db
from foreman_rt.arrays import id_array, json_array
from foreman_rt.sql import query

pytestmark = pytest.mark.db

JOBS = 600
ROUNDS = 6


async def _running(client: Client, conn: db.Connection, priorities: bool) -> list[int]:
    """JOBS running jobs; with `priorities`, run ids follow a different order than job ids."""
    await client.enqueue_many(
        [{"kind": "k", "priority": (i * 7919) % 13 if priorities else 0} for i in range(JOBS)]
    )
    rows = await conn.fetch(query("claim"), None, ["k"], JOBS, "w1", 60.0)
    assert len(rows) == JOBS
    return [r["run_id"] for r in rows]


async def _session(pg_dsn: str, schema: str) -> db.Connection:
    conn = await db.connect(pg_dsn, schema)
    for name, value in db.WORKER_PLANNER.items():  # plan as a worker's session does
        await conn.execute("SELECT set_config($1, $2, false)", name, value)
    # Fail fast instead of waiting a second for the deadlock detector.
    await conn.execute("SET deadlock_timeout = '50ms'")
    return conn


def _heartbeat(runs: list[int]) -> Callable[[db.Connection], Awaitable[object]]:
    nothing = [None] * len(runs)
    return lambda c: c.fetch(query("heartbeat"), id_array(runs), 60.0, nothing, nothing, nothing)


def _complete(runs: list[int]) -> Callable[[db.Connection], Awaitable[object]]:
    nothing = [None] * len(runs)
    return lambda c: c.fetch(
        query("complete_batch"), id_array(runs), json_array(["null"] * len(runs)), *[nothing] * 3
    )


def _fail(runs: list[int]) -> Callable[[db.Connection], Awaitable[object]]:
    nothing = [None] * len(runs)
    return lambda c: c.fetch(
        query("fail_batch"), id_array(runs), ["failed"] * len(runs), nothing, nothing
    )


async def _race(
    pg_dsn: str,
    schema: str,
    first: Callable[[db.Connection], Awaitable[object]],
    second: Callable[[db.Connection], Awaitable[object]],
) -> None:
    """Run both statements at once, each in a transaction that holds its locks a moment, so
    their row locks overlap whichever starts first."""
    a, b = await _session(pg_dsn, schema), await _session(pg_dsn, schema)
    try:

        async def run(conn: db.Connection, statement: Callable[..., Awaitable[object]]) -> None:
            async with conn.transaction():
                await statement(conn)
                await asyncio.sleep(0.02)

        await asyncio.gather(run(a, first), run(b, second))
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("finish", ["complete", "fail"])
@pytest.mark.parametrize("priorities", [False, True])
async def test_heartbeat_and_finishing_never_deadlock(
    client: Client, conn: db.Connection, pg_dsn: str, schema: str, finish: str, priorities: bool
) -> None:
    finishing = _complete if finish == "complete" else _fail
    for round_ in range(ROUNDS):
        runs = await _running(client, conn, priorities)
        # Opposite orders: a completer's batch in finishing order, a heartbeat's in claim
        # order; either one may take its first locks first.
        pair = (finishing(runs[::-1]), _heartbeat(runs))
        try:
            await _race(pg_dsn, schema, *(pair if round_ % 2 else pair[::-1]))
        except asyncpg.DeadlockDetectedError as exc:
            pytest.fail(f"heartbeat and {finish} deadlocked: {exc}")
        left = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'running'")
        assert left == 0
        await conn.execute("DELETE FROM jobs")
