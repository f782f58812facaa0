"""Regression tests for worker bugs found while writing the worker tests:
each failed before its fix and guards against its return."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from worker_support import WorkerFactory, runs_of, wait_status

from foreman_rt import Client, JobContext, Retry, db
from foreman_rt.sql import query
from foreman_rt.worker import completer as completer_module
from foreman_rt.worker.completer import Completer
from foreman_rt.worker.heartbeat import Heartbeat
from foreman_rt.worker.metrics import WorkerMetrics
from foreman_rt.worker.outcome import Succeeded

pytestmark = pytest.mark.db


async def test_retry_delay_is_honoured_by_the_timer_not_the_safety_poll(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise Retry("busy", delay=0.3)
        return ctx.attempt

    async with make_worker({"k": handler}, poll_interval=2.0, concurrency=1):
        job = (await client.enqueue("k", {})).job
        await wait_status(conn, job.id, "succeeded", timeout=5)
    first, second = await runs_of(conn, job.id)
    gap = (second["started_at"] - first["finished_at"]).total_seconds()
    assert 0.3 <= gap < 0.8, f"retry started {gap:.2f}s after a Retry(delay=0.3)"


async def test_full_worker_does_not_spin_after_a_due_time_passes(
    client: Client, make_worker: WorkerFactory
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(params: Any, ctx: JobContext) -> None:
        started.set()
        await release.wait()

    w = make_worker({"k": handler}, concurrency=1, poll_interval=30.0)
    calls = 0
    claim_once = w.claim_once

    async def counting() -> int:
        nonlocal calls
        calls += 1
        return await claim_once()

    w.claim_once = counting  # type: ignore[method-assign]
    async with w:
        await client.enqueue("k", {}, delay=0.2)  # sets the due-time timer, then fills the slot
        await asyncio.wait_for(started.wait(), 5)
        before, cpu = calls, time.process_time()
        await asyncio.sleep(0.5)  # an observation window: nothing should happen in it
        spins, cpu = calls - before, time.process_time() - cpu
        release.set()
    assert spins < 10, f"{spins} claim_once calls and {cpu:.2f}s CPU in 0.5s while full"


class _GatedPool:
    """A pool whose first fetches each wait for their own gate, so two flushes can overlap."""

    def __init__(self, pool: Any, gated: int) -> None:
        self._pool = pool
        self.gates = [asyncio.Event() for _ in range(gated)]
        self.calls = 0
        self.done = 0

    async def fetch(self, sql: str, *args: Any) -> Any:
        call, self.calls = self.calls, self.calls + 1
        if call < len(self.gates):
            await self.gates[call].wait()
        try:
            return await self._pool.fetch(sql, *args)
        finally:
            self.done += 1


async def _claim_runs(conn: db.Connection, n: int) -> list[int]:
    for _ in range(n):
        await conn.execute("INSERT INTO jobs (kind) VALUES ('k')")
    rows = await conn.fetch(query("claim"), None, ["k"], n, "test-worker", 30.0)
    return sorted(r["run_id"] for r in rows)


async def _until(check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.001)


async def test_completer_drain_overlapping_a_flush_loses_no_outcome(
    pg_dsn: str, schema: str, conn: db.Connection
) -> None:
    run_a, run_b = await _claim_runs(conn, 2)
    pool = await db.create_pool(pg_dsn, schema, min_size=1, max_size=2)
    gated = _GatedPool(pool, gated=2)
    metrics = WorkerMetrics()
    # A 0.3 s batching interval leaves the run() loop asleep while drain() finishes.
    completer = Completer(gated, metrics, interval=0.3, max_batch=1000)  # type: ignore[arg-type]
    loop_task = asyncio.create_task(completer.run())
    try:
        completer.add(Succeeded(run_a, '"a"'))
        await _until(lambda: gated.calls == 1)  # the run() loop's flush of [a] is in flight
        drain = asyncio.create_task(completer.drain(timeout=5))
        for _ in range(5):  # let drain() start: today its flush of the same [a] goes out too
            await asyncio.sleep(0)
        completer.add(Succeeded(run_b, '"b"'))  # a handler finishing during the shutdown
        gated.gates[0].set()
        await _until(lambda: gated.done == 1)  # the loop wrote [a], and now waits 0.3 s
        gated.gates[1].set()
        drained = await asyncio.wait_for(drain, 5)
        status = dict(await conn.fetch("SELECT id, status FROM job_runs"))
        late = metrics.late._value.get()
        assert (drained, status, late) == (True, {run_a: "succeeded", run_b: "succeeded"}, 0)
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await pool.close()


class _HookPool:
    """A pool that runs `hook` while the first fetch is in flight."""

    def __init__(self, pool: Any, hook: Any) -> None:
        self._pool = pool
        self._hook = hook

    async def fetch(self, sql: str, *args: Any) -> Any:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return await self._pool.fetch(sql, *args)


async def test_progress_reported_during_a_heartbeat_is_written_by_the_next(
    pg_dsn: str, schema: str, conn: db.Connection
) -> None:
    (run_id,) = await _claim_runs(conn, 1)
    job_id = await conn.fetchval("SELECT job_id FROM job_runs WHERE id = $1", run_id)
    ctx = JobContext(job_id=job_id, run_id=run_id, kind="k", queue="default", tenant="default",
              attempt=1, max_attempts=3)  # fmt: skip
    pool = await db.create_pool(pg_dsn, schema, min_size=1, max_size=1)
    try:
        hooked = _HookPool(pool, lambda: ctx.set_progress(4, 10, "four"))
        beat = Heartbeat(hooked, lambda: [ctx], lambda _b: None, lease_seconds=30, interval=10)  # type: ignore[arg-type]
        ctx.set_progress(3, 10, "three")
        await beat.run_once()  # writes 3; the handler reports 4 meanwhile
        await beat.run_once()  # must write 4
        row = await conn.fetchrow("SELECT progress_current, progress_message FROM job_runs")
        assert tuple(row) == (4, "four")
    finally:
        await pool.close()


async def test_finished_jobs_are_forgotten_once_their_outcomes_are_written(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    """Finished runs are kept for lease renewal only while their outcome waits to be written.
    They were once pruned by the heartbeat alone (every lease/3), so a fast drain held every
    finished job's context in memory until the next beat: +40 MB RSS over 20,000 jobs."""

    async def handler(params: Any, ctx: JobContext) -> None:
        return None

    worker = make_worker({"k": handler}, lease_seconds=300.0, concurrency=50)
    async with worker:
        await client.enqueue_many({"kind": "k", "params": {"n": n}} for n in range(500))

        async def drained() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
            return bool(n == 500)

        deadline = time.monotonic() + 30
        while not await drained():
            assert time.monotonic() < deadline, "the jobs did not finish"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the last flush
        assert worker.busy == 0, f"{worker.busy} finished runs still held as running"
        assert worker._completer is not None
        assert worker._completer.pending == 0, "written outcomes still buffered"
        heartbeat = worker._heartbeat
        assert heartbeat is not None
        assert await heartbeat.run_once() is None, "the heartbeat still renews finished runs"


async def test_a_finished_run_keeps_its_lease_until_its_outcome_is_written(
    pg_dsn: str, schema: str, conn: db.Connection
) -> None:
    """Finished runs whose outcome waits in the completer are renewed by run id alone; a run
    whose lease is gone comes back as lost."""
    held, expired = await _claim_runs(conn, 2)
    await conn.execute("UPDATE jobs SET lease_expires_at = now() + interval '1 second'")
    await conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1",
        expired,
    )
    pool = await db.create_pool(pg_dsn, schema, min_size=1, max_size=1)
    try:
        beats: list[Any] = []
        beat = Heartbeat(
            pool,
            list,
            beats.append,
            lease_seconds=300,
            interval=10,
            finished=lambda: [held, expired],
        )
        result = await beat.run_once()
        assert result is not None and beats == [result]
        assert (result.lost, result.cancel) == (frozenset({expired}), frozenset())
        left = await conn.fetchval(
            "SELECT extract(epoch FROM lease_expires_at - now()) FROM jobs WHERE run_id = $1", held
        )
        assert 290 < left <= 300
    finally:
        await pool.close()


async def test_a_heartbeat_carries_running_progress_beside_finished_runs(
    pg_dsn: str, schema: str, conn: db.Connection
) -> None:
    """One beat renews running attempts (one with progress to write, one without) and a
    finished run whose outcome is buffered: the progress lands on its own run only."""
    reporting, quiet, finished = await _claim_runs(conn, 3)
    jobs = dict(await conn.fetch("SELECT run_id, id FROM jobs"))
    ctxs = [
        JobContext(jobs[run], run, "k", "default", "default", 1, 3) for run in (reporting, quiet)
    ]
    ctxs[0].set_progress(4, 10, "four")
    pool = await db.create_pool(pg_dsn, schema, min_size=1, max_size=1)
    try:
        beat = Heartbeat(
            pool,
            lambda: ctxs,
            lambda _: None,
            lease_seconds=300,
            interval=10,
            finished=lambda: [finished],
        )
        result = await beat.run_once()
        assert result is not None and result.lost == frozenset()
        rows = await conn.fetch(
            "SELECT run_id, progress_current, progress_total, progress_message,"
            " lease_expires_at > now() + interval '290 seconds' AS renewed FROM jobs"
        )
        assert {r["run_id"]: tuple(r)[1:] for r in rows} == {
            reporting: (4, 10, "four", True),
            quiet: (None, None, None, True),
            finished: (None, None, None, True),
        }
    finally:
        await pool.close()


async def test_completions_with_large_results_go_out_in_statements_of_bounded_size(
    pg_dsn: str, schema: str, conn: db.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results travel as one jsonb array per statement, which PostgreSQL caps at 256 MiB: a
    flush takes results up to a total size, and the next flush takes the rest."""
    monkeypatch.setattr(completer_module, "RESULT_CHARS_PER_STATEMENT", 1000)
    runs = await _claim_runs(conn, 7)
    pool = await db.create_pool(pg_dsn, schema, min_size=1, max_size=1)
    completer = Completer(pool, WorkerMetrics(), interval=0.001, max_batch=1000)
    try:
        big = '"' + "x" * 400 + '"'  # 402 characters: two fit under 1000, a third does not
        for run in runs[:6]:
            completer.add(Succeeded(run, big))
        completer.add(Succeeded(runs[6], "[1,2]"))
        written = [await completer.run_once() for _ in range(4)]
        assert written == [2, 2, 3, 0]  # the small one rides with the last two big ones
        results = dict(await conn.fetch("SELECT run_id, result FROM jobs"))
        assert results == {**{run: "x" * 400 for run in runs[:6]}, runs[6]: [1, 2]}
    finally:
        await pool.close()
