"""A worker renews the leases of runs whose outcome is still buffered while its completer
writes them, so a heartbeat and a completion (or a failure) often update the same rows at
once. Each of those statements must lock its rows in job id order, whatever order its caller
passes them in: two statements that lock the same rows in opposite orders deadlock, and
PostgreSQL breaks the deadlock only after deadlock_timeout (a stalled flush and a retry)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from foreman_rt import db
from foreman_rt.arrays import id_array, json_array
from foreman_rt.sql import query

pytestmark = pytest.mark.db

JOBS = 600
ROUNDS = 6


async def _running(conn: db.Connection, priorities: bool, rng: random.Random) -> list[int]:
    """JOBS running jobs, written to the heap in shuffled id order (so that a scan in heap order
    differs from one in id order); with `priorities`, run ids follow yet another order."""
    first = await conn.fetchval("SELECT coalesce(max(id), 0) + 1 FROM jobs")
    ids = list(range(first, first + JOBS))
    rng.shuffle(ids)
    await conn.execute(
        "INSERT INTO jobs (id, kind, priority)"
        " SELECT i, 'k', CASE WHEN $2 THEN i * 7919 % 13 ELSE 0 END"
        " FROM unnest($1::bigint[]) WITH ORDINALITY AS t(i, n) ORDER BY n",
        ids,
        priorities,
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
    conn: db.Connection, pg_dsn: str, schema: str, finish: str, priorities: bool
) -> None:
    rng = random.Random(f"{finish}-{priorities}")
    finishing = _complete if finish == "complete" else _fail
    for round_ in range(ROUNDS):
        runs = await _running(conn, priorities, rng)
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


def _driving_scan(plan: dict[str, Any]) -> str:
    """What decides the order in which the update meets its rows: follow the outer side from
    the ModifyTable node down to a scan (a merge join meets both sides in key order)."""
    stack = [plan]
    while stack:  # find the update (fail_batch's is inside a CTE)
        node = stack.pop()
        if node["Node Type"] == "ModifyTable" and node.get("Relation Name") == "jobs":
            break
        stack.extend(node.get("Plans", []))
    else:
        raise AssertionError("no update in the plan")
    while node["Node Type"] != "Merge Join":
        outer = [p for p in node.get("Plans", []) if p.get("Parent Relationship") == "Outer"]
        if not outer:
            return f"{node['Node Type']} on {node.get('Relation Name') or node.get('CTE Name')}"
        node = outer[0]
    return "Merge Join"


# In id order: the sorted targets CTE, an index scan of jobs (array keys are sorted), a merge
# join. Not a bitmap or sequential scan of jobs (heap order).
ID_ORDER = {"CTE Scan on targets", "Index Scan on jobs", "Merge Join"}


@pytest.mark.parametrize("plan_mode", ["auto", "force_generic_plan"])
@pytest.mark.parametrize("analyzed", [False, True])
async def test_the_updates_meet_their_rows_in_id_order(
    conn: db.Connection, pg_dsn: str, schema: str, plan_mode: str, analyzed: bool
) -> None:
    """The lock order holds because the update meets its rows from the sorted targets or
    through the primary key, not from a scan in heap order. Checked in a worker's session on a
    never analyzed and on an analyzed table (the heap in shuffled order), in both plan modes."""
    runs = await _running(conn, True, random.Random(plan_mode))
    if analyzed:
        await conn.execute("ANALYZE jobs")
    worker = await _session(pg_dsn, schema)
    try:
        await worker.execute("SELECT set_config('plan_cache_mode', $1, false)", plan_mode)
        batch = runs[100:400]
        nothing = [None] * len(batch)
        statements = {
            "complete_batch": (
                id_array(batch),
                json_array(["null"] * len(batch)),
                None,
                None,
                None,
            ),
            "fail_batch": (id_array(batch), ["failed"] * len(batch), nothing, nothing),
            "heartbeat": (id_array(batch), 60.0, None, None, None),
        }
        for name, args in statements.items():
            raw = await worker.fetchval(f"EXPLAIN (FORMAT JSON) {query(name)}", *args)
            driving = _driving_scan(json.loads(raw)[0]["Plan"])
            assert driving in ID_ORDER, (name, driving)
    finally:
        await worker.close()
