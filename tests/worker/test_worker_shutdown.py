"""Graceful stop with running jobs: finished jobs are kept, interrupted runs are handed back
(`abandoned`, job `pending`) and finish on another worker; a second stop() skips the wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from worker_support import WorkerFactory, assert_invariants, runs_of, wait_until, watch_log

from foreman_rt import Client, JobContext, db

pytestmark = pytest.mark.db


async def test_stop_hands_back_jobs_still_running_after_the_shutdown_timeout(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    running: set[int] = set()
    release_quick = asyncio.Event()

    async def handler(params: Any, ctx: JobContext) -> dict[str, Any]:
        running.add(ctx.job_id)
        if ctx.attempt == 1:
            if params["slow"]:
                await asyncio.sleep(30)
            else:
                await release_quick.wait()
        return {"attempt": ctx.attempt}

    slow = [(await client.enqueue("k", {"slow": True})).job.id for _ in range(2)]
    quick = [(await client.enqueue("k", {"slow": False})).job.id for _ in range(2)]
    w = make_worker({"k": handler}, concurrency=8, shutdown_timeout=0.5)
    task = asyncio.create_task(w.run())
    try:

        async def all_running() -> bool:
            return running == {*slow, *quick}

        await wait_until(all_running, "four running handlers")
        t0 = time.monotonic()
        w.stop()
        release_quick.set()  # these finish inside the shutdown window and are kept
        await asyncio.wait_for(task, 10)
        took = time.monotonic() - t0
    finally:
        w.stop()
        w.stop()
    assert 0.45 <= took < 3.0, took

    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE status = 'running'") == 0
    for job_id in quick:
        assert [r["status"] for r in await runs_of(conn, job_id)] == ["succeeded"]
    for job_id in slow:
        runs = await runs_of(conn, job_id)
        assert [(r["status"], r["error"]) for r in runs] == [
            ("abandoned", "worker shut down before the job finished")
        ]
    statuses = dict(await conn.fetch("SELECT id, status FROM jobs"))
    assert statuses == {**dict.fromkeys(slow, "pending"), **dict.fromkeys(quick, "succeeded")}
    assert await conn.fetchval("SELECT count(*) FROM leaders") == 0  # resigned on the way out
    await assert_invariants(conn)

    # Handed back at once (retry delay 0): a new worker finishes them on attempt 2.
    async with make_worker({"k": handler}):

        async def slow_done() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'", slow
            )
            return n == 2

        await wait_until(slow_done, "the handed-back jobs to finish")
    for job_id in slow:
        assert [r["status"] for r in await runs_of(conn, job_id)] == ["abandoned", "succeeded"]
        assert await conn.fetchval("SELECT result FROM jobs WHERE id = $1", job_id) == {
            "attempt": 2
        }
    await assert_invariants(conn)


async def test_second_stop_skips_the_shutdown_wait(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    started = asyncio.Event()

    async def handler(params: Any, ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)

    w = make_worker({"k": handler}, shutdown_timeout=30.0)
    task = asyncio.create_task(w.run())
    try:
        job = (await client.enqueue("k", {})).job
        await asyncio.wait_for(started.wait(), 10)
        with watch_log("foreman_rt.worker", "stopping: waiting up to 30s") as draining:
            w.stop()
            await asyncio.wait_for(draining.seen.wait(), 5)
        assert not task.done()
        t0 = time.monotonic()
        w.stop()
        await asyncio.wait_for(task, 10)
        took = time.monotonic() - t0
    finally:
        w.stop()
    print(f"\nsecond stop() to worker exit: {took * 1000:.0f} ms")
    assert took < 1.0
    runs = await runs_of(conn, job.id)
    assert [r["status"] for r in runs] == ["abandoned"]
    assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job.id) == "pending"
    await assert_invariants(conn)
