"""The running attempt lives on its job row (migration 0008): its run row is written once, when
the attempt ends, under the run id drawn at the claim; the job_runs view still shows every
attempt. Also: the upgrade from 0007 moves live attempts over, and a completion reaches only
its own jobs whatever the planner's statistics say."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from helpers import claim, complete, fail

from foreman_rt import Client, db, migrations
from foreman_rt.arrays import id_array, json_array
from foreman_rt.sql import query

pytestmark = pytest.mark.db


async def test_a_run_keeps_its_id_from_claim_to_its_finished_row(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("k", max_attempts=2)).job
    [first] = await claim(conn, "k")
    running = await conn.fetch("SELECT * FROM job_runs WHERE job_id = $1", job.id)
    assert [(r["id"], r["status"], r["attempt"]) for r in running] == [
        (first["run_id"], "running", 1)
    ]
    assert await conn.fetchval("SELECT count(*) FROM finished_runs") == 0

    await conn.fetch(query("fail_batch"), id_array([first["run_id"]]), ["failed"], ["boom"], [0.0])
    await conn.execute("UPDATE jobs SET scheduled_at = now() WHERE id = $1", job.id)
    [second] = await claim(conn, "k")
    assert second["run_id"] > first["run_id"]
    await complete(conn, second["run_id"])

    runs = await client.runs(job.id)
    assert [(r.id, r.attempt, r.status.value, r.error) for r in runs] == [
        (first["run_id"], 1, "failed", "boom"),
        (second["run_id"], 2, "succeeded", None),
    ]
    row = await conn.fetchrow(
        "SELECT status, run_id, lease_expires_at FROM jobs WHERE id = $1", job.id
    )
    assert tuple(row) == ("succeeded", second["run_id"], None)  # the success stays on the job
    finished = await conn.fetch("SELECT id, status FROM finished_runs")
    assert [tuple(r) for r in finished] == [(first["run_id"], "failed")]


async def test_late_outcomes_of_an_ended_attempt_change_nothing(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("k")).job
    [row] = await claim(conn, "k")
    await complete(conn, row["run_id"])
    assert (
        await conn.fetch(
            query("complete_batch"), id_array([row["run_id"]]), "[1]", None, None, None
        )
        == []
    )
    assert (
        await conn.fetch(query("fail_batch"), id_array([row["run_id"]]), ["failed"], ["x"], [None])
        == []
    )
    assert (
        await conn.fetch(query("heartbeat"), id_array([row["run_id"]]), 30.0, [1], [2], ["m"]) == []
    )
    assert [r.status.value for r in await client.runs(job.id)] == ["succeeded"]


async def test_a_running_job_without_its_attempt_is_refused(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("k")).job
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "UPDATE jobs SET status = 'running', started_at = now() WHERE id = $1", job.id
        )
    await claim(conn, "k")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE jobs SET run_id = NULL WHERE id = $1", job.id)


def _rows_read_from_jobs(plan: Any) -> int:
    """Rows that scans of `jobs` returned, over every loop, in an EXPLAIN (ANALYZE) JSON plan."""
    total = 0
    if plan.get("Relation Name") == "jobs" and "Scan" in plan["Node Type"]:
        total += int(plan["Actual Rows"]) * int(plan["Actual Loops"])
    for child in plan.get("Plans", []):
        total += _rows_read_from_jobs(child)
    return total


def _rows_removed_by_join_filters(plan: Any) -> int:
    """Row pairs that joins examined and threw away, over every loop, in an EXPLAIN (ANALYZE)
    JSON plan: a nested loop over every (run, job) pair shows here, not in the rows read."""
    total = int(plan.get("Rows Removed by Join Filter", 0)) * int(plan.get("Actual Loops", 1))
    for child in plan.get("Plans", []):
        total += _rows_removed_by_join_filters(child)
    return total


@pytest.mark.parametrize("plan_mode", ["auto", "force_generic_plan"])
async def test_a_completion_reads_only_its_own_jobs_with_statistics_from_before_the_claim(
    client: Client, conn: db.Connection, plan_mode: str
) -> None:
    """The statistics say no job is running (ANALYZE ran before the claims): a plan built on
    them once scanned every running job for each batch, and a generic plan (what a prepared
    statement gets after five runs) once joined every run to every job of the batch. Each
    statement must read its own rows, and pair each run with its job only."""
    await client.enqueue_many([{"kind": "k", "params": {"i": i}} for i in range(3000)])
    await conn.execute("ANALYZE jobs")
    runs: list[int] = []
    while rows := await conn.fetch(query("claim"), None, ["k"], 500, "w", 60.0):
        runs += [r["run_id"] for r in rows]
    assert len(runs) == 3000
    batch = runs[1000:1100]
    none = [None] * len(batch)
    statements: list[tuple[str, str, tuple[Any, ...]]] = [
        (
            "complete_batch",
            "text, jsonb, bigint[], bigint[], text[]",
            (id_array(batch), json_array(["null"] * len(batch)), none, none, none),
        ),
        (
            "fail_batch",
            "text, text[], text[], double precision[]",
            (id_array(batch), ["failed"] * len(batch), ["x"] * len(batch), none),
        ),
        (
            "heartbeat",
            "text, double precision, bigint[], bigint[], text[]",
            (id_array(batch), 60.0, none, none, none),
        ),
    ]
    for name, types, args in statements:
        # A named prepared statement, as asyncpg makes: plan_cache_mode then decides its plan.
        await conn.execute(f"PREPARE probe_{name} ({types}) AS {query(name)}")
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SELECT set_config('plan_cache_mode', $1, true)", plan_mode)
            # EXPLAIN EXECUTE takes no bind parameters: pass the values as typed literals.
            literals = [
                f"{await conn.fetchval(f'SELECT quote_literal($1::{t})', a)}::{t}"
                for t, a in zip(types.split(", "), args, strict=True)
            ]
            plan = json.loads(
                await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE probe_{name} ({', '.join(literals)})"
                )
            )[0]["Plan"]
        finally:
            await tx.rollback()
            await conn.execute(f"DEALLOCATE probe_{name}")
        read = _rows_read_from_jobs(plan)
        assert read <= 2 * len(batch), f"{name} read {read} rows of jobs for {len(batch)} runs"
        pairs = _rows_removed_by_join_filters(plan)
        assert pairs <= len(batch), f"{name} examined {pairs} extra pairs for {len(batch)} runs"


async def test_upgrade_moves_live_attempts_onto_their_jobs(pg_dsn: str, schema: str) -> None:
    """A schema at 0007 with a running attempt and an ended one: after 0008 the running one is
    on its job (same run id, worker, lease, progress), completes under that id, and new run ids
    continue after the old ones."""
    old = f"{schema}_old"
    conn = await db.connect(pg_dsn, old)
    try:
        await migrations.migrate(conn, old, upto=7)
        job = await conn.fetchval(
            "INSERT INTO jobs (kind, status, attempt_count, started_at)"
            " VALUES ('k', 'running', 2, now()) RETURNING id"
        )
        failed_run = await conn.fetchval(
            "INSERT INTO job_runs (job_id, attempt, worker_id, status, error, finished_at)"
            " VALUES ($1, 1, 'w-old', 'failed', 'boom', now()) RETURNING id",
            job,
        )
        live_run = await conn.fetchval(
            "INSERT INTO job_runs (job_id, attempt, worker_id, lease_expires_at,"
            " progress_current, progress_total)"
            " VALUES ($1, 2, 'w-live', now() + interval '1 minute', 3, 9) RETURNING id",
            job,
        )

        applied = await migrations.migrate(conn, old)
        assert [m.version for m in applied] == [
            m.version for m in migrations.load_migrations() if m.version >= 8
        ]

        row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job)
        assert (row["run_id"], row["worker_id"], row["progress_current"]) == (live_run, "w-live", 3)
        view = await conn.fetch(
            "SELECT id, status FROM job_runs WHERE job_id = $1 ORDER BY id", job
        )
        assert [tuple(r) for r in view] == [(failed_run, "failed"), (live_run, "running")]

        await complete(conn, live_run)
        runs = await conn.fetch(
            "SELECT id, attempt, worker_id, status, progress_current FROM job_runs ORDER BY id"
        )
        assert [tuple(r) for r in runs] == [
            (failed_run, 1, "w-old", "failed", None),
            (live_run, 2, "w-live", "succeeded", 3),
        ]
        await conn.execute("INSERT INTO jobs (kind) VALUES ('k')")
        [new] = await claim(conn, "k")
        assert new["run_id"] > live_run
        await fail(conn, new["run_id"])
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{old}" CASCADE')
        await conn.close()
