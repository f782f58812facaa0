"""Cancel with a real worker: pending jobs at once, running async handlers through the cancel
NOTIFY within milliseconds, sync handlers cooperatively, and cancel winning over retry."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from worker_support import WorkerFactory, assert_invariants, runs_of, wait_status, wait_until

from foreman_rt import Client, JobContext, db

pytestmark = pytest.mark.db


async def test_pending_job_is_cancelled_at_once_and_never_runs(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    ran: list[int] = []

    async def handler(params: Any, ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    job = (await client.enqueue("k", {}, delay=0.3)).job
    cancelled = await client.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.completed_at is not None
    assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job.id) == "cancelled"

    async with make_worker({"k": handler}, poll_interval=0.1):
        # A later job of the same kind, due after the cancelled one would have been.
        sentinel = (await client.enqueue("k", {}, delay=0.4)).job
        await wait_status(conn, sentinel.id, "succeeded")
    assert ran == [sentinel.id]
    assert await runs_of(conn, job.id) == []
    await assert_invariants(conn)


async def test_running_async_handler_is_cancelled_within_milliseconds(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    started: dict[int, asyncio.Event] = {}
    cancelled_at: dict[int, float] = {}

    async def handler(params: Any, ctx: JobContext) -> None:
        started[ctx.job_id].set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled_at[ctx.job_id] = time.perf_counter()
            raise

    latencies = []
    # lease 30 s: heartbeats are 10 s apart, so only the cancel NOTIFY can be this fast.
    async with make_worker({"k": handler}, lease_seconds=30.0, poll_interval=0.2):
        for _ in range(5):
            job = (await client.enqueue("k", {})).job
            started[job.id] = asyncio.Event()
            await asyncio.wait_for(started[job.id].wait(), 10)
            t0 = time.perf_counter()
            await client.cancel(job.id)
            await wait_until(_get(cancelled_at, job.id), "the handler's CancelledError", 5)
            latencies.append(cancelled_at[job.id] - t0)
            await wait_status(conn, job.id, "cancelled")
            runs = await runs_of(conn, job.id)
            assert [(r["status"], r["error"]) for r in runs] == [
                ("cancelled", "cancelled by request")
            ]
    print(f"\ncancel latency (client.cancel -> CancelledError): {_ms(latencies)}")
    assert max(latencies) < 0.5, latencies
    await assert_invariants(conn)


async def test_running_sync_handler_sees_the_cancel_and_raises(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    started = threading.Event()
    seen: list[float] = []

    def handler(params: Any, ctx: JobContext) -> str:
        started.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if ctx.cancelled:
                seen.append(time.perf_counter())
                ctx.raise_if_cancelled()
            time.sleep(0.002)
        return "never cancelled"

    async with make_worker({"k": handler}, lease_seconds=30.0):
        job = (await client.enqueue("k", {})).job
        assert await asyncio.to_thread(started.wait, 10)
        t0 = time.perf_counter()
        await client.cancel(job.id)
        await wait_status(conn, job.id, "cancelled")
    assert len(seen) == 1
    print(f"\nsync handler saw ctx.cancelled after {_ms([seen[0] - t0])}")
    assert seen[0] - t0 < 0.5
    runs = await runs_of(conn, job.id)
    assert [r["status"] for r in runs] == ["cancelled"]
    await assert_invariants(conn)


async def test_cancel_beats_retry_when_the_handler_raises_after_hearing_the_cancel(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    started = threading.Event()

    def handler(params: Any, ctx: JobContext) -> None:
        started.set()
        ctx.cancel_event.wait(20)
        raise ValueError("cleanup failed")  # a plain, retryable error

    async with make_worker({"k": handler}):
        job = (await client.enqueue("k", {}, max_attempts=3)).job
        assert await asyncio.to_thread(started.wait, 10)
        await client.cancel(job.id)
        await wait_status(conn, job.id, "cancelled")
    row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job.id)
    assert row["attempt_count"] == 1 and row["completed_at"] is not None
    assert [r["status"] for r in await runs_of(conn, job.id)] == ["cancelled"]
    await assert_invariants(conn)


async def test_cancel_beats_retry_when_the_worker_never_heard_the_cancel(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    """Poll-only with a long lease: no cancel NOTIFY and no heartbeat reaches the worker, so
    the worker reports a retryable failure; fail_batch.sql must still end the job cancelled."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(params: Any, ctx: JobContext) -> None:
        started.set()
        await release.wait()
        assert not ctx.cancelled
        raise RuntimeError("upstream down")

    async with make_worker({"k": handler}, poll_only=True, poll_interval=0.1, lease_seconds=60.0):
        job = (await client.enqueue("k", {}, max_attempts=3)).job
        await asyncio.wait_for(started.wait(), 10)
        assert (await client.cancel(job.id)).cancel_requested
        release.set()
        await wait_status(conn, job.id, "cancelled")
    runs = await runs_of(conn, job.id)
    assert [r["status"] for r in runs] == ["failed"]
    assert "upstream down" in runs[0]["error"]
    assert await conn.fetchval("SELECT attempt_count FROM jobs WHERE id = $1", job.id) == 1
    await assert_invariants(conn)


def _get(d: dict[int, float], key: int) -> Any:
    async def check() -> bool:
        return key in d

    return check


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.1f} ms" for v in values)
