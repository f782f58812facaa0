"""The LISTEN connection: killed by the server, the worker reconnects and claims what was
enqueued meanwhile (the NOTIFYs were lost); poll-only mode works without one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from worker_support import WorkerFactory, assert_invariants, wait_until

from foreman_rt import Client, JobContext, db

pytestmark = pytest.mark.db

LISTENER = "foreman-rt listener"


async def _listener_pid(conn: db.Connection, worker: Any) -> int:
    """The server pid of this worker's LISTEN connection, checked in pg_stat_activity."""
    listener = worker._listener
    await asyncio.wait_for(listener.connected.wait(), 10)
    pid = listener._conn.get_server_pid()
    found = await conn.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid = $2", LISTENER, pid
    )
    assert found == pid
    return int(pid)


async def _count_done(conn: db.Connection, ids: list[int]) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'", ids
        )
    )


async def test_worker_reconnects_after_listener_is_terminated_and_runs_missed_jobs(
    client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> None:
        return None

    # 30 s safety poll: only a NOTIFY or the claim after a reconnect can start jobs in time.
    w = make_worker({"k": handler}, poll_interval=30.0)
    async with w:
        before = (await client.enqueue("k", {})).job.id
        await wait_until(lambda: _count_done(conn, [before]), "a job before the kill")
        old_pid = await _listener_pid(conn, w)

        # Hold the reconnect until the test has enqueued jobs nobody hears about.
        gate = asyncio.Event()
        reconnecting = asyncio.Event()
        connect = w._listener._connect

        async def gated_connect() -> Any:
            reconnecting.set()
            await gate.wait()
            return await connect()

        w._listener._connect = gated_connect
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", old_pid)
        await asyncio.wait_for(reconnecting.wait(), 10)
        assert not w._listener.connected.is_set()
        missed = [(await client.enqueue("k", {"i": i})).job.id for i in range(5)]
        assert await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'pending'", missed
        ) == len(missed)

        gate.set()
        await wait_until(
            lambda: _count_done(conn, missed), "the missed jobs after the reconnect", timeout=5
        )
        new_pid = await _listener_pid(conn, w)
        assert new_pid != old_pid
        assert w._listener.reconnects >= 1

        # And NOTIFY works again on the new connection.
        after = (await client.enqueue("k", {})).job.id
        await wait_until(lambda: _count_done(conn, [after]), "a job after the reconnect", timeout=5)
    await assert_invariants(conn)


async def test_poll_only_worker_runs_jobs_without_a_listener(
    schema: str, client: Client, conn: db.Connection, make_worker: WorkerFactory
) -> None:
    async def handler(params: Any, ctx: JobContext) -> int:
        return int(params["i"])

    w = make_worker({"k": handler}, poll_only=True, poll_interval=0.2)
    async with w:
        ids = [(await client.enqueue("k", {"i": i})).job.id for i in range(10)]
        await wait_until(lambda: _count_done(conn, ids), "poll-only jobs", timeout=5)
        assert w._listener is None
        listening_here = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND query LIKE '%' || $2 || '%'",
            LISTENER,
            schema,
        )
        assert listening_here == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE result <> params->'i'") == 0
    await assert_invariants(conn)
