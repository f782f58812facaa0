"""Database restart: two worker processes and a `foreman-rt api` process on a PostgreSQL of the
scenario's own. While 3,000 jobs (0-50 ms each) drain, the server is restarted with shutdown
mode 'fast', later again with 'immediate'; once everything is done, once more while the workers
are idle. Nothing is restarted by hand: the workers, their listeners and the API reconnect with
backoff by themselves.

After each restart: the API enqueues again within a bounded time (every refusal meanwhile is a
503 `database_unavailable`), a job completes, and every LISTEN connection is back (the metrics
gauges say 1 and pg_stat_activity shows the sessions). The workers poll only every 30 s, so a
job enqueued after the idle restart can only run promptly through the listener's reconnect
(which triggers a claim) or a NOTIFY on the new LISTEN session. At the end: check_invariants.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    Cluster,
    Procs,
    check_invariants,
    cluster,
    free_port,
    fresh_schema,
    processes,
    record_result,
    scale,
    wait_until_terminal,
)
from support import Api, Reconnecting, client_for, scrape, start_api, wait_for

from foreman_rt import JobSpec, db
from foreman_rt.notify import Listener

JOBS = int(scale(3_000, 30_000))
CYCLES = int(scale(1, 5))  # each cycle restarts once with 'fast' and once with 'immediate'
WORKERS = 2
POLL = 30.0  # the workers' safety poll (jittered to 24-36 s): far beyond PROMPT
WORKER_OPTIONS = ("--concurrency", "4", "--poll-interval", str(POLL), "--lease", "10")
WORKER_OPTIONS += ("--reap-interval", "0.5", "--leader-ttl", "3")
PROMPT = 10.0  # a job enqueued after a restart runs within this; only the listener explains it
RECOVERY = 60.0  # bound for the API, the first completion and the listeners after a restart
BUDGET = scale(180, 900)  # the whole drain, generous for a loaded machine
LISTENERS = {"foreman-rt listener": WORKERS, "foreman-rt api listener": 1}

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(int(BUDGET + 240))]


class Scenario:
    """What the restarts need: the cluster, the processes and a way to look at the database."""

    def __init__(self, c: Cluster, schema: str, procs: Procs, api: Api, metrics: list[str]):
        self.c = c
        self.procs = procs
        self.api = api
        self.worker_metrics = metrics
        self.db = Reconnecting(c.dsn, schema)
        self.ids: list[int] = []
        self.listener_state = ""

    async def succeeded(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'"))

    async def api_enqueue(self, http: httpx.AsyncClient) -> tuple[float, list[str]]:
        """POST one job until it is accepted (one idempotency key for every try, so a reply lost
        after the commit cannot make a second job); seconds it took and every refusal."""
        started = time.monotonic()
        key = "probe-" + secrets.token_hex(6)
        body = {"kind": "rel.work", "params": {"ms": 0}, "idempotency_key": key}
        refusals: list[str] = []
        while time.monotonic() - started < RECOVERY:
            try:
                reply = await http.post("/foreman/jobs", json=body)
            except httpx.TransportError as exc:
                refusals.append(type(exc).__name__)
            else:
                data = reply.json()
                if reply.status_code in (201, 409):
                    self.ids.append(int((data if reply.status_code == 201 else data["job"])["id"]))
                    return time.monotonic() - started, refusals
                refusals.append(f"{reply.status_code} {data.get('code')}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"the API did not enqueue within {RECOVERY} s: {refusals[-5:]}")

    async def keep_enqueueing(self, http: httpx.AsyncClient, stop: asyncio.Event) -> list[str]:
        """POST a job every 20 ms until `stop` (across the restart); every refusal."""
        refusals: list[str] = []
        while not stop.is_set():
            body = {
                "kind": "rel.work",
                "params": {"ms": 0},
                "idempotency_key": secrets.token_hex(8),
            }
            try:
                reply = await http.post("/foreman/jobs", json=body)
            except httpx.TransportError as exc:
                refusals.append(type(exc).__name__)
            else:
                if reply.status_code == 201:
                    self.ids.append(int(reply.json()["id"]))
                else:
                    refusals.append(f"{reply.status_code} {reply.json().get('code')}")
            await asyncio.sleep(0.02)
        return refusals

    async def first_completion_after(self, wall: float) -> float:
        """Seconds from `wall` (epoch) to the first job completed after it."""
        got: list[float] = []

        async def done() -> bool:
            value = await self.db.fetchval(
                "SELECT extract(epoch FROM min(completed_at))::float8 FROM jobs"
                " WHERE completed_at > to_timestamp($1)",
                wall,
            )
            if value is not None:
                got.append(value - wall)
            return value is not None

        await wait_for(done, RECOVERY, "a job completed after the restart")
        return got[0]

    async def listeners_back(self) -> bool:
        """Every LISTEN session is up again: gauges at 1 and the sessions in pg_stat_activity."""
        api = await scrape(self.api.url("/metrics"), "foreman_listener_connected")
        workers = [
            await scrape(u, "foreman_worker_listener_connected") for u in self.worker_metrics
        ]
        rows = await self.db.fetch(
            "SELECT application_name, count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = ANY($1::text[])"
            " GROUP BY application_name",
            list(LISTENERS),
        )
        sessions = {r["application_name"]: r["n"] for r in rows}
        self.listener_state = f"api gauge {api}, worker gauges {workers}, sessions {sessions}"
        return api == 1 and workers == [1] * WORKERS and sessions == LISTENERS

    async def restart(self, mode: str, http: httpx.AsyncClient) -> dict[str, Any]:
        """Restart the server and measure the recovery from the moment it accepts again."""
        pending = int(await self.db.fetchval("SELECT count(*) FROM jobs WHERE status = 'pending'"))
        stop = asyncio.Event()
        during = asyncio.create_task(self.keep_enqueueing(http, stop))
        took = await asyncio.to_thread(self.c.restart, mode)
        wall, mono = time.time(), time.monotonic()
        enqueue = asyncio.create_task(self.api_enqueue(http))
        first = await self.first_completion_after(wall)
        api_s, refusals = await enqueue
        try:
            await wait_for(self.listeners_back, RECOVERY, f"listeners back after a {mode} restart")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.listener_state}") from None
        listeners_s = time.monotonic() - mono
        stop.set()
        refused_during = await during
        unexpected = [r for r in refusals + refused_during if r != "503 database_unavailable"]
        assert not unexpected, f"after a {mode} restart the API answered {unexpected}"
        alive = self.procs.alive_workers()
        assert len(alive) == WORKERS, f"a worker died in the {mode} restart"
        assert self.api.proc.poll() is None, f"the API died in the {mode} restart"
        return {
            "mode": mode,
            "pending_at_restart": pending,
            "restart_s": round(took, 2),
            "first_completion_s": round(first, 2),
            "api_enqueue_s": round(api_s, 2),
            "api_refusals_after": len(refusals),
            "api_503s_across_restart": len(refused_during),
            "listeners_s": round(listeners_s, 2),
        }


async def test_workers_and_api_survive_database_restarts(tmp_path: Path) -> None:
    schema = "chaos_restart"
    with cluster(own=True) as c, processes(c.dsn, schema) as procs:
        await fresh_schema(c.dsn, schema)
        ports = [free_port() for _ in range(WORKERS)]
        for i, port in enumerate(ports):
            procs.start_worker(
                *WORKER_OPTIONS, "--metrics-port", str(port), output=tmp_path / f"worker{i}.log"
            )
        api = await start_api(procs, "--rate", "100000", "--burst", "100000")
        s = Scenario(c, schema, procs, api, [f"http://127.0.0.1:{p}/metrics" for p in ports])
        try:
            await wait_for(s.listeners_back, RECOVERY, "workers and API listening")
            async with client_for(c.dsn, schema) as cl:
                spec = JobSpec.build("rel.work", None, max_attempts=10)
                for start in range(0, JOBS, 1000):
                    n = min(1000, JOBS - start)
                    s.ids.extend(e.id for e in await cl.enqueue_many([spec] * n))
            drain_started = time.monotonic()
            restarts: list[dict[str, Any]] = []
            modes = ["fast", "immediate"] * CYCLES
            async with httpx.AsyncClient(base_url=api.base, timeout=10.0) as http:
                for i, mode in enumerate(modes):
                    mark = JOBS * (i + 1) // (len(modes) + 1)
                    await wait_for(
                        lambda m=mark: _at_least(s, m), BUDGET, f"{mark} jobs done", 0.05
                    )
                    restarts.append(await s.restart(mode, http))
                conn = await db.connect(c.dsn, schema)
                try:
                    await wait_until_terminal(conn, len(s.ids), BUDGET)
                finally:
                    await conn.close()
                drain_s = time.monotonic() - drain_started
                # Idle workers: the next job reaches them through the listener or not at all
                # (their poll is 24-36 s away).
                await asyncio.sleep(1.0)
                idle = await s.restart("fast", http)
                idle["mode"] = "fast, workers idle"
                assert idle["first_completion_s"] < PROMPT, (
                    f"a job enqueued after the restart took {idle['first_completion_s']} s:"
                    " the workers' listeners did not pick it up"
                )
                notify_s = await _notify_probe(c.dsn, schema, s)
                assert notify_s < PROMPT, f"a NOTIFY after the restart took {notify_s} s"
            conn = await db.connect(c.dsn, schema)
            try:
                await wait_until_terminal(conn, len(s.ids), RECOVERY)
                report = await check_invariants(conn, s.ids, procs.exec_dir)
            finally:
                await conn.close()
        finally:
            await s.db.close()
        figures = {
            "jobs": len(s.ids),
            "drain_s": round(drain_s, 1),
            "restarts": [*restarts, idle],
            "enqueue_to_done_after_listener_back_s": round(notify_s, 2),
            "abandoned_runs": report.abandoned_runs,
            "extra_executions": report.extra_executions,
        }
        record_result("db_restart", figures)


async def _at_least(s: Scenario, n: int) -> bool:
    return await s.succeeded() >= n


async def _notify_probe(dsn: str, schema: str, s: Scenario) -> float:
    """With every listener back, enqueue one job and time it to completion: only a NOTIFY on the
    new LISTEN sessions can wake the idle workers this fast."""
    async with client_for(dsn, schema) as cl:
        started = time.monotonic()
        job = (await cl.enqueue("rel.work", {"ms": 0})).job
        s.ids.append(job.id)
        done = await cl.wait(job.id, timeout=RECOVERY)
        assert done.status.value == "succeeded", done
        return time.monotonic() - started


async def test_listener_stops_when_cancelled_as_its_connection_drops() -> None:
    """What a restart does to a worker whose other component just failed: the server closes
    the LISTEN connection in the same moment the worker's TaskGroup cancels the listener. The
    cancellation must win; a listener that reconnects instead keeps the TaskGroup (and so the
    worker process) alive forever, with nothing claiming, heartbeating or completing."""
    with cluster() as c:
        listener = Listener(
            lambda: db.connect(c.dsn, "public", application_name="chaos listener"),
            {"chaos_channel": lambda _payload: None},
        )
        task = asyncio.create_task(listener.run())
        try:
            await listener.wait_connected(RECOVERY)
            conn = listener._conn
            assert conn is not None
            conn.terminate()  # the connection drops (its termination callback runs next) ...
            await asyncio.sleep(0)
            task.cancel()  # ... as the TaskGroup cancels its siblings
            done, _ = await asyncio.wait([task], timeout=5.0)
            assert done, (
                f"the listener ignored its cancellation and reconnected "
                f"(reconnects={listener.reconnects}, connected={listener.connected.is_set()})"
            )
        finally:
            for _ in range(3):  # a listener that swallowed one cancellation may take another
                if task.done():
                    break
                task.cancel()
                await asyncio.wait([task], timeout=5.0)
