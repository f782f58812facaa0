"""When jobs run: delayed jobs on time (timer, no NOTIFY), retries after their delay, attempts
and permanent failures, invalid typed params, and kinds or queues no worker handles."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from pydantic import BaseModel
from worker_support import WorkerFactory, assert_invariants, runs_of, wait_status, wait_until

from foreman_rt import Client, JobContext, PermanentError, Retry, db

pytestmark = pytest.mark.db


async def test_delayed_jobs_start_on_time_from_the_timer_without_a_notify(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    starts: dict[int, float] = {}

    async def handler(params: Any, ctx: JobContext) -> None:
        starts[ctx.job_id] = time.time()

    wakes: list[tuple[float, str]] = []
    listener = await db.connect(pg_dsn, schema, application_name="foreman-rt test listener")
    await listener.add_listener(
        f"{schema}_wake", lambda _c, _p, _ch, payload: wakes.append((time.time(), payload))
    )
    try:
        # A 30 s safety poll: only the worker's due-time timer can start these on time.
        async with make_worker({"later": handler}, poll_interval=30.0, concurrency=4):

            async def armed() -> bool:
                return bool(await conn.fetchval("SELECT count(*) FROM wake_demand"))

            # Inserts notify only once an idle worker has said it waits for them.
            await wait_until(armed, "the worker to ask for insert notifications", timeout=5)
            ids = []
            for _ in range(3):
                ids.append((await client.enqueue("later", {}, delay=1.0)).job.id)
                await asyncio.sleep(0.15)  # stagger the due times: three timer wake-ups

            async def all_done() -> bool:
                n = await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND id = ANY($1)", ids
                )
                return n == 3

            await wait_until(all_done, "the delayed jobs to finish", timeout=5)
    finally:
        await listener.close()

    rows = await conn.fetch(
        "SELECT j.id, j.scheduled_at, j.enqueued_at, r.started_at FROM jobs AS j"
        " JOIN job_runs AS r ON r.job_id = j.id WHERE j.id = ANY($1) ORDER BY j.id",
        ids,
    )
    lags = [starts[r["id"]] - r["scheduled_at"].timestamp() for r in rows]
    print(f"\ndelayed-start lag (handler start - scheduled_at): {_ms(lags)}")
    for r in rows:
        assert r["started_at"] >= r["scheduled_at"]  # never claimed early (database clock)
        assert (r["scheduled_at"] - r["enqueued_at"]).total_seconds() == pytest.approx(1.0)
    assert all(0 <= lag < 0.25 for lag in lags), lags
    # One wake-up per enqueue, all long before the due times; none when the jobs fell due.
    assert len(wakes) == 3, wakes
    first_due = min(r["scheduled_at"].timestamp() for r in rows)
    assert all(at < first_due - 0.5 for at, _payload in wakes), (wakes, first_due)
    await assert_invariants(conn)


async def test_retry_with_delay_runs_again_no_earlier_than_the_delay(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise Retry("busy", delay=0.5)
        return ctx.attempt

    async with make_worker({"k": handler}, poll_interval=0.2):
        job = (await client.enqueue("k", {})).job
        await wait_status(conn, job.id, "succeeded")
    first, second = await runs_of(conn, job.id)
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert first["error"].startswith("Retry: busy")
    gap = (second["started_at"] - first["finished_at"]).total_seconds()
    print(f"\nRetry(delay=0.5): next attempt started {gap * 1000:.0f} ms after the failure")
    assert gap >= 0.5
    await assert_invariants(conn)


async def test_plain_exception_fails_after_exactly_max_attempts(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> None:
        raise ValueError(f"boom {ctx.attempt}")

    async with make_worker({"k": handler}, poll_interval=0.1):
        job = (await client.enqueue("k", {}, max_attempts=3, backoff=(0.05, 0.1))).job
        await wait_status(conn, job.id, "failed")
    runs = await runs_of(conn, job.id)
    assert [(r["attempt"], r["status"]) for r in runs] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert [r["error"].split("\n")[0] for r in runs] == [f"ValueError: boom {i}" for i in (1, 2, 3)]
    for before, after in itertools.pairwise(runs):
        assert (after["started_at"] - before["finished_at"]).total_seconds() >= 0.025
    row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job.id)
    assert row["attempt_count"] == 3 and row["error"].startswith("ValueError: boom 3")
    await assert_invariants(conn)


async def test_permanent_error_fails_after_one_run(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> None:
        raise PermanentError("malformed record")

    async with make_worker({"k": handler}):
        job = (await client.enqueue("k", {}, max_attempts=5)).job
        await wait_status(conn, job.id, "failed")
    runs = await runs_of(conn, job.id)
    assert [r["status"] for r in runs] == ["failed"]
    assert runs[0]["error"].startswith("PermanentError: malformed record")
    assert await conn.fetchval("SELECT attempt_count FROM jobs WHERE id = $1", job.id) == 1
    await assert_invariants(conn)


class Email(BaseModel):
    to: str
    subject: str = "hello"


async def test_typed_handler_with_invalid_params_fails_once(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    received: list[Email] = []

    async def send(params: Email, ctx: JobContext) -> dict[str, str]:
        received.append(params)
        return {"to": params.to}

    async with make_worker({"email": send}):
        bad = (await client.enqueue("email", {"subject": 7}, max_attempts=3)).job
        good = (await client.enqueue("email", {"to": "a@example.org"})).job
        await wait_status(conn, bad.id, "failed")
        await wait_status(conn, good.id, "succeeded")
    runs = await runs_of(conn, bad.id)
    assert [r["status"] for r in runs] == ["failed"]
    assert "invalid params" in runs[0]["error"]
    assert "invalid params" in await conn.fetchval("SELECT error FROM jobs WHERE id = $1", bad.id)
    assert received == [Email(to="a@example.org")]
    await assert_invariants(conn)


async def test_unhandled_kinds_and_queues_stay_pending_and_do_not_block_others(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> None:
        await asyncio.sleep(0.001)

    # The unhandled jobs come first in claim order (higher priority, older).
    ghosts = [(await client.enqueue("ghost", {}, priority=100)).job.id for _ in range(20)]
    other_queue = [
        (await client.enqueue("real", {}, queue="b", priority=100)).job.id for _ in range(5)
    ]
    real = [(await client.enqueue("real", {}, queue="a")).job.id for _ in range(40)]
    async with make_worker({"real": handler}, concurrency=5, queues=("a",)):

        async def real_done() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'", real
            )
            return n == len(real)

        await wait_until(real_done, "the handled jobs to finish")
    untouched = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'pending' AND attempt_count = 0",
        ghosts + other_queue,
    )
    assert untouched == len(ghosts) + len(other_queue)
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM job_runs WHERE job_id = ANY($1)", ghosts + other_queue
        )
        == 0
    )
    await assert_invariants(conn)


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.1f} ms" for v in values)
