"""Workers ask for insert notifications only while they have free slots: a full worker drops its
wake_demand row, a worker with free slots writes it, and an insert that raced the arming (it
looked for demand just before the row existed and committed later) still runs at once, not at
the next safety poll."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from worker_support import WorkerFactory, wait_status, wait_until

from foreman_rt import Client, JobContext, db
from foreman_rt.worker import runtime

pytestmark = pytest.mark.db


async def _holders(conn: db.Connection) -> list[str]:
    rows = await conn.fetch("SELECT holder FROM wake_demand WHERE expires_at > now()")
    return [r["holder"] for r in rows]


async def test_full_worker_withdraws_demand_and_an_idle_one_arms_again(
    client: Client, conn: db.Connection, make_worker: WorkerFactory, monkeypatch: Any
) -> None:
    monkeypatch.setattr(runtime, "DEMAND_TICK", 0.1)
    release = asyncio.Event()

    async def hold(params: Any, ctx: JobContext) -> None:
        await release.wait()

    worker = make_worker({"hold": hold}, concurrency=1, poll_interval=30.0)
    async with worker:

        async def armed() -> bool:
            return worker.worker_id in await _holders(conn)

        await wait_until(armed, "an idle worker to ask for insert notifications")
        first = (await client.enqueue("hold")).job
        await wait_status(conn, first.id, "running")

        async def withdrawn() -> bool:
            return worker.worker_id not in await _holders(conn)

        await wait_until(withdrawn, "a full worker to withdraw its demand")
        # No demand: this insert does not notify; the finishing job makes the worker claim it.
        second = (await client.enqueue("hold")).job
        release.set()
        await wait_status(conn, second.id, "succeeded")
        await wait_until(armed, "the worker, idle again, to ask for insert notifications")
        third = (await client.enqueue("hold")).job
        await wait_status(conn, third.id, "succeeded", timeout=5)
    assert await _holders(conn) == [], "a stopped worker left its demand row"


async def test_insert_racing_the_arming_runs_without_waiting_for_the_safety_poll(
    pg_dsn: str,
    schema: str,
    client: Client,
    conn: db.Connection,
    make_worker: WorkerFactory,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(runtime, "DEMAND_TICK", 0.1)
    release = asyncio.Event()
    started: dict[int, float] = {}

    async def hold(params: Any, ctx: JobContext) -> None:
        started[ctx.job_id] = time.monotonic()
        if params.get("hold"):
            await release.wait()

    worker = make_worker({"hold": hold}, concurrency=1, poll_interval=30.0)
    producer = await db.connect(pg_dsn, schema)
    try:
        async with worker:
            busy = (await client.enqueue("hold", {"hold": True})).job
            await wait_status(conn, busy.id, "running")

            async def withdrawn() -> bool:
                return worker.worker_id not in await _holders(conn)

            await wait_until(withdrawn, "the full worker to withdraw its demand")
            # The insert sees no demand (no NOTIFY) and stays uncommitted while the worker
            # finishes, claims nothing, and arms.
            tx = producer.transaction()
            await tx.start()
            racing = (await client.enqueue("hold", connection=producer)).job
            release.set()
            await wait_status(conn, busy.id, "succeeded")

            async def armed() -> bool:
                return worker.worker_id in await _holders(conn)

            await wait_until(armed, "the idle worker to arm")
            await asyncio.sleep(0.2)
            committed = time.monotonic()
            await tx.commit()
            await wait_status(conn, racing.id, "succeeded", timeout=5)
        lag = started[racing.id] - committed
        assert lag < 2.0, f"the racing insert ran {lag:.2f}s after its commit (poll is 30 s)"
    finally:
        await producer.close()


async def test_outcomes_waiting_to_be_written_hold_back_claims(
    client: Client, conn: db.Connection, make_worker: WorkerFactory, monkeypatch: Any
) -> None:
    """Backpressure: while outcomes cannot be written, a worker claims at most one flush batch
    (or one set of slots, if larger) beyond them, so its buffer (and memory) stays bounded."""
    from foreman_rt.worker.completer import Completer

    gate = asyncio.Event()
    real = Completer.run_once

    async def slow_run_once(self: Completer) -> int:
        await gate.wait()  # the database "cannot keep up" until the gate opens
        return await real(self)

    monkeypatch.setattr(Completer, "run_once", slow_run_once)

    async def noop(params: Any, ctx: JobContext) -> None:
        return None

    await client.enqueue_many([{"kind": "n", "params": {"i": i}} for i in range(200)])
    async with make_worker({"n": noop}, concurrency=5, poll_interval=0.2, flush_max=5):
        await asyncio.sleep(1.5)  # several poll ticks: claims would keep coming without a bound
        claimed = await conn.fetchval("SELECT count(*) FROM job_runs")
        assert 5 <= claimed <= 10, f"{claimed} runs claimed while no outcome could be written"
        gate.set()

        async def all_done() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
            return bool(n == 200)

        await wait_until(all_done, "every job to finish once outcomes can be written")


async def test_a_worker_woken_too_often_polls_instead_and_asks_again_when_load_falls(
    pg_dsn: str,
    schema: str,
    client: Client,
    conn: db.Connection,
    make_worker: WorkerFactory,
    monkeypatch: Any,
) -> None:
    """Producers sending single-job inserts faster than busy_wake_rate: the worker drops its
    demand row (their commits stop notifying), claims on the short period, misses nothing, and
    once the load is gone asks for wake-ups again, so a lone job then starts at once."""
    monkeypatch.setattr(runtime, "DEMAND_TICK", 0.2)

    async def noop(params: Any, ctx: JobContext) -> None:
        return None

    worker = make_worker({"k": noop}, concurrency=50, poll_interval=30.0, busy_wake_rate=100.0)
    async with worker:

        async def armed() -> bool:
            return worker.worker_id in await _holders(conn)

        await wait_until(armed, "an idle worker to ask for insert notifications")
        stop = asyncio.Event()
        sent = 0

        async def produce() -> None:
            nonlocal sent
            producer = await db.connect(pg_dsn, schema)
            try:
                while not stop.is_set():
                    await producer.execute("INSERT INTO jobs (kind) VALUES ('k')")
                    sent += 1
            finally:
                await producer.close()

        producers = [asyncio.create_task(produce()) for _ in range(4)]
        try:

            async def polling() -> bool:
                gauge = worker.metrics.busy_polling._value.get()
                return gauge == 1 and not await armed()

            await wait_until(polling, "the worker to poll instead of asking for wake-ups")
            await asyncio.sleep(0.5)  # inserts now commit without notifying anyone
            assert not await armed()
        finally:
            stop.set()
            await asyncio.gather(*producers)

        async def all_done() -> bool:
            left = await conn.fetchval("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
            return left == 0

        await wait_until(all_done, f"all {sent} jobs to succeed")
        assert await conn.fetchval("SELECT count(*) FROM jobs") == sent
        await wait_until(armed, "the worker, idle again, to ask for wake-ups again")
        assert worker.metrics.busy_polling._value.get() == 0
        started = time.monotonic()
        lone = (await client.enqueue("k")).job
        await wait_status(conn, lone.id, "succeeded", timeout=5)
        assert time.monotonic() - started < 1.0, "a lone job waited for the 30 s safety poll"
