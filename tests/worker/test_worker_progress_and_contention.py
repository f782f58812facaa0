"""Progress reaches the database through an early heartbeat (and a NOTIFY); two busy workers on
one schema run every job exactly once."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest
from helpers import listening
from worker_support import WorkerFactory, assert_invariants, wait_status, wait_until

from foreman_rt import Client, JobContext, db

pytestmark = pytest.mark.db


async def test_progress_is_written_by_an_early_heartbeat_and_notified(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    reported = asyncio.Event()
    release = asyncio.Event()
    reported_at: list[float] = []

    async def handler(params: Any, ctx: JobContext) -> None:
        await ctx.progress(3, 10, "x")
        reported_at.append(time.monotonic())
        reported.set()
        await release.wait()

    # lease 30 s: regular heartbeats are 10 s apart; progress must trigger an early one.
    async with (
        listening(pg_dsn, schema, f"{schema}_events") as events,
        make_worker({"k": handler}, lease_seconds=30.0),
    ):
        job = (await client.enqueue("k", {})).job
        await asyncio.wait_for(reported.wait(), 10)

        async def progress() -> Any:
            return await conn.fetchrow(
                "SELECT progress_current, progress_total, progress_message FROM job_runs"
                " WHERE job_id = $1 AND progress_current IS NOT NULL",
                job.id,
            )

        row = await wait_until(progress, "progress in job_runs", timeout=1.0, every=0.005)
        latency = time.monotonic() - reported_at[0]
        assert tuple(row) == (3, 10, "x")

        async def progress_notified() -> bool:
            while True:
                data = json.loads(await events.next())
                if "p" in data and [int(i) for i in data["p"]] == [job.id]:
                    return True

        assert await asyncio.wait_for(progress_notified(), 2.0)
        release.set()
        await wait_status(conn, job.id, "succeeded")
    print(f"\nprogress visible in job_runs {latency * 1000:.0f} ms after ctx.progress()")
    await assert_invariants(conn)


async def test_progress_reported_just_before_returning_is_kept_with_the_result(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    """The last progress call of a handler that returns at once (no heartbeat in between) is
    written with the completion, so a finished job does not show 11 of 12 steps."""

    async def handler(params: Any, ctx: JobContext) -> str:
        for step in range(1, 13):
            await ctx.progress(step, 12, f"step {step}")
        return "done"

    async with make_worker({"k": handler}, lease_seconds=30.0):
        job = (await client.enqueue("k", {})).job
        await wait_status(conn, job.id, "succeeded")
    row = await conn.fetchrow(
        "SELECT status, progress_current, progress_total, progress_message, result"
        " FROM job_runs WHERE job_id = $1",
        job.id,
    )
    assert tuple(row) == ("succeeded", 12, 12, "step 12", "done")
    await assert_invariants(conn)


async def test_two_workers_with_50_slots_each_run_2000_jobs_exactly_once(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> int:
        await asyncio.sleep(random.random() * 0.005)
        return int(params["n"])

    a = make_worker({"k": handler}, concurrency=50, poll_interval=0.2)
    b = make_worker({"k": handler}, concurrency=50, poll_interval=0.2)
    async with a, b:
        t0 = time.monotonic()
        await client.enqueue_many({"kind": "k", "params": {"n": n}} for n in range(2000))

        async def drained() -> bool:
            return (
                await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'") == 2000
            )

        await wait_until(drained, "2,000 succeeded jobs", timeout=30, every=0.05)
        took = time.monotonic() - t0
    print(f"\n2,000 jobs on 2 in-process workers x 50 slots: {took:.2f}s")
    per_job = await conn.fetch(
        "SELECT j.id, count(r.id) AS runs FROM jobs AS j LEFT JOIN job_runs AS r"
        " ON r.job_id = j.id GROUP BY j.id HAVING count(r.id) <> 1"
    )
    assert [dict(r) for r in per_job] == []
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE status <> 'succeeded'") == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE result <> params->'n'") == 0
    by_worker = dict(await conn.fetch("SELECT worker_id, count(*) FROM job_runs GROUP BY 1"))
    assert set(by_worker) == {a.worker_id, b.worker_id}, by_worker
    assert a.metrics.late._value.get() == b.metrics.late._value.get() == 0
    await assert_invariants(conn)
