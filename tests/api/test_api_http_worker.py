"""A worker written only against the HTTP API (plain httpx: claim → heartbeat with progress →
complete) sharing one kind with a native in-process foreman_rt.Worker: 200 jobs, every one
succeeds exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from api_support import ApiServer

from foreman_rt import Client, JobContext, Worker, db

pytestmark = [pytest.mark.db, pytest.mark.e2e]

KIND = "mixed"
JOBS = 200


async def http_worker(
    base: str, worker_id: str, done: asyncio.Event, tally: Counter[str], run_scoped: bool
) -> None:
    """What a worker in any language would do, using nothing but HTTP."""
    claim_path = "/jobs/claim" if run_scoped else "/claim"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not done.is_set():
            r = await http.post(
                claim_path, json={"kinds": [KIND], "worker_id": worker_id, "lease_seconds": 30}
            )
            if r.status_code == 204:
                await asyncio.sleep(0.02)
                continue
            assert r.status_code == 200, r.text
            claimed = r.json()
            job, run = claimed["job"], claimed["run"]
            target = f"/runs/{run['id']}" if run_scoped else f"/jobs/{job['id']}"
            r = await http.post(
                f"{target}/heartbeat",
                json={
                    "worker_id": worker_id,
                    "progress_current": 1,
                    "progress_total": 2,
                    "progress_message": "halfway",
                },
            )
            assert r.status_code == 200, r.text
            assert r.json()["cancel_requested"] is False
            r = await http.post(
                f"{target}/complete",
                json={"worker_id": worker_id, "result": {"by": worker_id, "n": job["params"]["n"]}},
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "succeeded"
            tally[worker_id] += 1


async def test_http_worker_next_to_a_native_worker(
    api: ApiServer, pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    tally: Counter[str] = Counter()

    async def native(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(1, 2, "halfway")
        await asyncio.sleep(0.005)
        tally["native"] += 1
        return {"by": "native", "n": params["n"]}

    await client.enqueue_many([{"kind": KIND, "params": {"n": i}} for i in range(JOBS)])
    done = asyncio.Event()
    async with Worker(
        pg_dsn, {KIND: native}, schema=schema, concurrency=4, poll_interval=0.2, shutdown_timeout=2
    ):
        workers = [
            asyncio.create_task(http_worker(api.base, "http-1", done, tally, run_scoped=False)),
            asyncio.create_task(http_worker(api.base, "http-2", done, tally, run_scoped=True)),
        ]
        deadline = time.monotonic() + 60
        try:
            while (
                await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'") < JOBS
            ):
                assert time.monotonic() < deadline, "the jobs did not all finish in 60 s"
                for w in workers:
                    if w.done():
                        w.result()  # raise what the HTTP worker hit
                await asyncio.sleep(0.05)
        finally:
            done.set()
            await asyncio.gather(*workers)

    statuses = await conn.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"succeeded": JOBS}
    runs = await conn.fetch(
        "SELECT job_id, count(*) AS n, bool_and(status = 'succeeded') AS ok,"
        " min(worker_id) AS worker FROM job_runs GROUP BY job_id"
    )
    assert len(runs) == JOBS
    assert all(r["n"] == 1 and r["ok"] for r in runs), [dict(r) for r in runs if r["n"] != 1]
    results = await conn.fetch("SELECT params, result FROM jobs")
    assert all(r["result"]["n"] == r["params"]["n"] for r in results)
    assert sum(tally.values()) == JOBS, tally
    assert tally["native"] > 0 and tally["http-1"] + tally["http-2"] > 0, tally
    by_http = sum(1 for r in results if r["result"]["by"].startswith("http-"))
    assert by_http == tally["http-1"] + tally["http-2"]
    progress = await conn.fetchval(
        "SELECT count(*) FROM job_runs WHERE progress_current = 1 AND progress_total = 2"
    )
    assert progress >= by_http  # every HTTP run recorded its progress
    print(f"HTTP workers ran {by_http} jobs, the native worker {tally['native']}")
