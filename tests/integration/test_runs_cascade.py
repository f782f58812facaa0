"""finished_runs has no foreign key to jobs (migration 0009): deleting or truncating jobs takes
their runs along by triggers, a completion racing a deletion leaves no orphan run, and the
upgrade from 0008 keeps every run."""

from __future__ import annotations

import asyncio

import pytest
from helpers import claim, complete

from foreman_rt import Client, db, migrations
from foreman_rt.arrays import id_array
from foreman_rt.sql import query

pytestmark = pytest.mark.db

ORPHANS = "SELECT count(*) FROM finished_runs AS r WHERE NOT EXISTS (SELECT FROM jobs WHERE id = r.job_id)"


async def _finished_job(client: Client, conn: db.Connection, attempts: int) -> int:
    """A job with `attempts` finished runs: failures, then a success."""
    job = (await client.enqueue("k", max_attempts=attempts)).job
    for attempt in range(1, attempts + 1):
        await conn.execute("UPDATE jobs SET scheduled_at = now() WHERE id = $1", job.id)
        [row] = await claim(conn, "k")
        if attempt < attempts:  # failed, retried at once
            await conn.fetch(
                query("fail_batch"), id_array([row["run_id"]]), ["failed"], ["boom"], [0.0]
            )
        else:
            await complete(conn, row["run_id"])
    return job.id


async def test_deleting_jobs_deletes_their_runs_only(client: Client, conn: db.Connection) -> None:
    gone = [await _finished_job(client, conn, 2) for _ in range(3)]
    kept = await _finished_job(client, conn, 3)
    assert await conn.fetchval("SELECT count(*) FROM job_runs") == 9
    assert await conn.fetchval("SELECT count(*) FROM finished_runs") == 5  # the failed ones

    assert await conn.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", gone) == "DELETE 3"
    runs = await conn.fetch("SELECT job_id, attempt FROM finished_runs ORDER BY attempt")
    assert [tuple(r) for r in runs] == [(kept, 1), (kept, 2)]
    runs = await conn.fetch("SELECT job_id, attempt, status FROM job_runs ORDER BY attempt")
    assert [tuple(r) for r in runs] == [
        (kept, 1, "failed"),
        (kept, 2, "failed"),
        (kept, 3, "succeeded"),
    ]


async def test_retention_deletes_old_jobs_with_their_runs(
    client: Client, conn: db.Connection
) -> None:
    old = await _finished_job(client, conn, 2)
    new = await _finished_job(client, conn, 1)
    await conn.execute(
        "UPDATE jobs SET completed_at = now() - interval '10 days' WHERE id = $1", old
    )
    assert await conn.execute(query("retention"), 7, 100) == "DELETE 1"
    assert await conn.fetchval("SELECT count(*) FROM finished_runs") == 0  # old's failed run
    assert [r["job_id"] for r in await conn.fetch("SELECT job_id FROM job_runs")] == [new]


async def test_truncating_jobs_truncates_their_runs(client: Client, conn: db.Connection) -> None:
    await _finished_job(client, conn, 2)
    await conn.execute("TRUNCATE jobs")
    assert await conn.fetchval("SELECT count(*) FROM finished_runs") == 0


@pytest.mark.parametrize("first", ["completion", "deletion"])
async def test_a_completion_racing_a_deletion_leaves_no_orphan_run(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection, first: str
) -> None:
    """Two real sessions. The completion's transaction holds the job row while the deletion
    waits for it (or the other way round); whichever commits first, no run outlives its job."""
    job = (await client.enqueue("k")).job
    [row] = await claim(conn, "k")
    worker = await db.connect(pg_dsn, schema)
    admin = await db.connect(pg_dsn, schema)
    try:
        holder, waiter = (worker, admin) if first == "completion" else (admin, worker)
        tx = holder.transaction()
        await tx.start()
        if first == "completion":
            done = await holder.fetch(
                query("complete_batch"), id_array([row["run_id"]]), "[1]", None, None, None
            )
            assert len(done) == 1
            blocked = asyncio.ensure_future(
                waiter.execute("DELETE FROM jobs WHERE id = $1", job.id)
            )
        else:
            await holder.execute("DELETE FROM jobs WHERE id = $1", job.id)
            blocked = asyncio.ensure_future(
                waiter.fetch(
                    query("complete_batch"), id_array([row["run_id"]]), "[1]", None, None, None
                )
            )
        await asyncio.sleep(0.3)
        assert not blocked.done()  # waiting for the holder's row lock
        await tx.commit()
        outcome = await asyncio.wait_for(blocked, 10)
        if first == "deletion":
            assert outcome == []  # the job was gone: nothing completed, no run written
        else:
            assert outcome == "DELETE 1"
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
        assert await conn.fetchval("SELECT count(*) FROM finished_runs") == 0
        assert await conn.fetchval(ORPHANS) == 0
    finally:
        await worker.close()
        await admin.close()


async def test_upgrade_from_0008_keeps_runs_and_cascades(pg_dsn: str, schema: str) -> None:
    old = f"{schema}_old"
    conn = await db.connect(pg_dsn, old)
    try:
        await migrations.migrate(conn, old, upto=8)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_constraint WHERE conname = 'finished_runs_job_id_fkey'"
                " AND connamespace = $1::regnamespace",
                old,
            )
            == 1
        )
        # Two succeeded jobs as 0008 left them: the job row without its attempt, plus a run row.
        runs = [
            await conn.fetchval(
                """
                WITH j AS (
                    INSERT INTO jobs (kind, status, attempt_count, started_at, completed_at)
                    VALUES ('k', 'succeeded', 1, now(), now()) RETURNING id
                )
                INSERT INTO finished_runs (job_id, attempt, worker_id, status, finished_at)
                SELECT id, 1, 'w-old', 'succeeded', now() FROM j RETURNING id
                """
            )
            for _ in range(2)
        ]

        applied = await migrations.migrate(conn, old)
        assert [m.version for m in applied] == [
            m.version for m in migrations.load_migrations() if m.version >= 9
        ]
        assert sorted(r["id"] for r in await conn.fetch("SELECT id FROM finished_runs")) == runs
        view = await conn.fetch("SELECT id, status FROM job_runs ORDER BY id")
        assert [tuple(r) for r in view] == [(r, "succeeded") for r in runs]  # listed once each
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_constraint WHERE conname = 'finished_runs_job_id_fkey'"
                " AND connamespace = $1::regnamespace",
                old,
            )
            == 0
        )
        await conn.execute(
            "DELETE FROM jobs WHERE id = (SELECT job_id FROM finished_runs WHERE id = $1)", runs[0]
        )
        assert [r["id"] for r in await conn.fetch("SELECT id FROM finished_runs")] == [runs[1]]
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{old}" CASCADE')
        await conn.close()
