"""Cut connections. (a) While jobs drain through two workers, their database connections (the
listener's and the pool's) are terminated at random with pg_terminate_backend; the workers
reconnect and every job succeeds exactly once. (b) A network partition: worker A reaches
PostgreSQL through a TCP proxy, worker B (the leader) directly. The proxy blackholes A while it
holds leases: they expire, B reaps them and completes those jobs; after the proxy heals, A's
late completions and heartbeats change nothing."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from harness import (
    check_invariants,
    cluster,
    drop_schema,
    fresh_schema,
    processes,
    record_result,
    scale,
    worker_backends,
)
from tcp_proxy import TcpProxy

from foreman_rt import Client, JobSpec, db

OPTIONS = ("--lease", "2", "--reap-interval", "0.2", "--leader-ttl", "2")
T = TypeVar("T")
LATE = re.compile(r"(\d+) completions arrived after their lease was lost")


def tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


async def wait_for(
    what: str, check: Callable[[], Awaitable[T]], timeout: float, interval: float = 0.1
) -> T:
    """Poll the coroutine function `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def assert_alive(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for p, log in zip(procs, logs, strict=True):
        assert p.poll() is None, f"worker exited with {p.returncode}:\n{tail(log)}"


# -- (a) pg_terminate_backend at random --------------------------------------------------------

JOBS_A = int(scale(1_000, 3_000))
ENQUEUE_SECONDS_A = scale(10, 30)
BUDGET_A = scale(120, 300)


@pytest.mark.timeout(int(BUDGET_A + 120))
async def test_terminated_connections(tmp_path: Path) -> None:
    schema = "rel_cut_" + secrets.token_hex(4)
    with cluster() as c, processes(c.dsn, schema) as procs:
        await fresh_schema(c.dsn, schema)
        conn = await db.connect(c.dsn, schema, application_name="reliability chaos")
        client = await Client.connect(c.dsn, schema, max_size=2)
        logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
        workers = [procs.start_worker("--concurrency", "20", *OPTIONS, output=log) for log in logs]
        ids: list[int] = []
        terminated: Counter[str] = Counter()
        try:
            t0 = time.monotonic()
            stop = asyncio.Event()

            async def produce() -> None:
                per_tick = max(1, round(JOBS_A / (ENQUEUE_SECONDS_A / 0.1)))
                spec = JobSpec.build("rel.work", None, max_attempts=25)
                while len(ids) < JOBS_A:
                    n = min(per_tick, JOBS_A - len(ids))
                    ids.extend(e.id for e in await client.enqueue_many([spec] * n))
                    await asyncio.sleep(0.1)

            async def terminate() -> None:
                rng = random.Random()
                while not stop.is_set():
                    await asyncio.sleep(rng.uniform(0.15, 0.45))
                    backends = await worker_backends(conn, c, [w.pid for w in workers])
                    if not backends:
                        continue
                    pid, name = rng.choice(backends)
                    if await conn.fetchval("SELECT pg_terminate_backend($1)", pid):
                        terminated[name] += 1

            producer = asyncio.create_task(produce())
            terminator = asyncio.create_task(terminate())

            async def drained() -> bool:
                assert_alive(workers, logs)
                if terminator.done():
                    terminator.result()
                if not producer.done():
                    return False
                producer.result()
                return bool(
                    await conn.fetchval(
                        "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
                    )
                    == 0
                )

            try:
                await wait_for(f"{JOBS_A} jobs to drain", drained, BUDGET_A, 0.2)
            finally:
                stop.set()
                await asyncio.gather(terminator, return_exceptions=True)
                producer.cancel()
            elapsed = time.monotonic() - t0
            assert_alive(workers, logs)
            await asyncio.to_thread(procs.stop_all, 60)
            codes = [w.returncode for w in workers]
            assert codes == [0, 0], f"exit codes after SIGTERM: {codes}\n{tail(logs[0])}"
            report = await check_invariants(conn, ids, procs.exec_dir)
        finally:
            await client.close()
            await conn.close()
            if not c.own:
                await asyncio.to_thread(procs.stop_all)
                await drop_schema(c.dsn, schema)
        text = "".join(log.read_text(errors="replace") for log in logs)

    assert sum(terminated.values()) >= 10, f"too few connections were cut: {dict(terminated)}"
    record_result(
        "cut_connections_terminate",
        {
            "jobs": report.jobs,
            "workers": 2,
            "terminated_listener": terminated["foreman-rt listener"],
            "terminated_pool": terminated["foreman-rt worker"],
            "runs": report.runs,
            "abandoned_runs": report.abandoned_runs,
            "extra_executions": report.extra_executions,
            "late_outcomes": sum(int(n) for n in LATE.findall(text)),
            "drain_seconds": round(elapsed, 1),
        },
    )


# -- (b) a partition through a TCP proxy -------------------------------------------------------

SLOTS_B = 10
JOB_MS = 3000


@pytest.mark.timeout(300)
async def test_partitioned_worker_loses_its_leases(tmp_path: Path) -> None:
    schema = "rel_part_" + secrets.token_hex(4)
    with (
        cluster(tcp=True) as c,
        TcpProxy.for_dsn(c.dsn) as proxy,
        processes(c.dsn, schema) as procs,
    ):
        await fresh_schema(c.dsn, schema)
        conn = await db.connect(c.dsn, schema, application_name="reliability chaos")
        client = await Client.connect(c.dsn, schema, max_size=2)
        log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
        slots = ("--concurrency", str(SLOTS_B))
        try:
            # B first, directly: it takes the maintenance lead (and so reaps) before A starts.
            b = procs.start_worker(*slots, *OPTIONS, output=log_b)

            async def b_leads() -> bool:
                assert_alive([b], [log_b])
                holder = await conn.fetchval(
                    "SELECT holder FROM leaders WHERE role = 'maintenance' AND expires_at > now()"
                )
                return holder is not None and f":{b.pid}:" in holder

            await wait_for("worker B to lead", b_leads, 60)
            a = procs.start_worker(*slots, *OPTIONS, dsn=proxy.dsn(c.dsn), output=log_a)
            a_id = f"%:{a.pid}:%"

            async def a_connected() -> bool:  # its pool's two connections and its listener
                assert_alive([a, b], [log_a, log_b])
                return proxy.open_connections >= 3

            await wait_for("worker A to connect through the proxy", a_connected, 60)
            await asyncio.sleep(1.0)

            # Twice the slots of one worker: whichever claims first, A holds some of them.
            enqueued = await client.enqueue_many(
                [JobSpec.build("rel.work", {"ms": JOB_MS}, max_attempts=5)] * (2 * SLOTS_B)
            )
            ids = [e.id for e in enqueued]

            async def a_running() -> list[int]:
                rows = await conn.fetch(
                    "SELECT id FROM job_runs WHERE worker_id LIKE $1 AND status = 'running'", a_id
                )
                return [r["id"] for r in rows]

            await wait_for("worker A to hold leases", a_running, 30)
            await asyncio.sleep(0.3)  # let A's claim of free slots settle
            proxy.blackhole()
            cut_at: datetime = await conn.fetchval("SELECT clock_timestamp()")
            held = await conn.fetch(
                "SELECT id, job_id, attempt FROM job_runs WHERE worker_id LIKE $1"
                " AND status = 'running'",
                a_id,
            )
            held_runs = [r["id"] for r in held]
            held_jobs = [r["job_id"] for r in held]
            assert held_runs, "A held no lease when the partition began"

            async def all_succeeded() -> bool:
                assert_alive([a, b], [log_a, log_b])
                return bool(
                    await conn.fetchval(
                        "SELECT count(*) = $2 FROM jobs WHERE id = ANY($1::bigint[])"
                        " AND status = 'succeeded'",
                        ids,
                        len(ids),
                    )
                )

            # A's leases expire (2 s), B reaps them, retries them after the backoff, runs them.
            await wait_for("B to finish A's jobs during the partition", all_succeeded, 90)
            partition_s = (await conn.fetchval("SELECT clock_timestamp()") - cut_at).total_seconds()
            reaped = await conn.fetch(
                "SELECT id, status, error FROM job_runs WHERE id = ANY($1::bigint[])", held_runs
            )
            assert all(r["status"] == "abandoned" for r in reaped), [tuple(r) for r in reaped]

            proxy.heal()
            healed_at: datetime = await conn.fetchval("SELECT clock_timestamp()")

            def late_count() -> int:
                return sum(int(n) for n in LATE.findall(log_a.read_text(errors="replace")))

            async def a_late_arrived() -> bool:
                assert_alive([a, b], [log_a, log_b])
                return late_count() >= len(held_runs)

            # A's completions were held by the partition: now they reach PostgreSQL, and lose.
            await wait_for("A's late completions to arrive", a_late_arrived, 60)
            await asyncio.sleep(1.0)  # and a heartbeat or two

            # Every job: one succeeded run, by B for the jobs A held, whose result the job keeps.
            per_job = await conn.fetch(
                "SELECT j.id, j.status, j.result,"
                " count(r.id) FILTER (WHERE r.status = 'succeeded') AS wins,"
                " (array_agg(r.worker_id) FILTER (WHERE r.status = 'succeeded'))[1] AS winner,"
                " (array_agg(r.result) FILTER (WHERE r.status = 'succeeded'))[1] AS won"
                " FROM jobs AS j JOIN job_runs AS r ON r.job_id = j.id"
                " WHERE j.id = ANY($1::bigint[]) GROUP BY j.id",
                ids,
            )
            assert len(per_job) == len(ids)
            for r in per_job:
                assert r["status"] == "succeeded" and r["wins"] == 1, tuple(r)
                assert r["result"] == r["won"], f"job {r['id']} result is not its winner's"
                if r["id"] in held_jobs:
                    assert f":{b.pid}:" in r["winner"], f"job {r['id']} won by {r['winner']}"
            # A's runs stay abandoned: nothing touched them after the heal.
            after = await conn.fetch(
                "SELECT id, status, error, finished_at, updated_at FROM job_runs"
                " WHERE id = ANY($1::bigint[])",
                held_runs,
            )
            for r in after:
                assert r["status"] == "abandoned", f"A's run {r['id']} became {r['status']}"
                assert r["error"] == "lease expired", tuple(r)
                assert r["updated_at"] < healed_at, f"A's run {r['id']} changed after the heal"
            a_won = await conn.fetchval(
                "SELECT count(*) FROM job_runs WHERE worker_id LIKE $1 AND status = 'succeeded'"
                " AND finished_at >= $2",
                a_id,
                cut_at,
            )
            assert a_won == 0, "a run of A succeeded after the partition began"
            leader = await conn.fetchval("SELECT holder FROM leaders WHERE role = 'maintenance'")
            assert f":{b.pid}:" in leader, f"leadership moved to {leader}"
            recovery = await conn.fetchrow(
                "SELECT extract(epoch FROM max(n.started_at) - $2::timestamptz) AS rerun,"
                " extract(epoch FROM max(j.completed_at) - $2::timestamptz) AS done"
                " FROM job_runs AS o"
                " JOIN job_runs AS n ON n.job_id = o.job_id AND n.attempt = o.attempt + 1"
                " JOIN jobs AS j ON j.id = o.job_id WHERE o.id = ANY($1::bigint[])",
                held_runs,
                cut_at,
            )

            # A is back: with B's slots full, A claims (by NOTIFY or its poll) and completes.
            more_at: datetime = await conn.fetchval("SELECT clock_timestamp()")
            more = await client.enqueue_many(
                [JobSpec.build("rel.work", {"ms": JOB_MS}, max_attempts=5)] * (2 * SLOTS_B)
            )
            ids += [e.id for e in more]

            async def a_back() -> float | None:
                assert_alive([a, b], [log_a, log_b])
                return await conn.fetchval(
                    "SELECT extract(epoch FROM min(started_at) - $2::timestamptz)"
                    " FROM job_runs WHERE worker_id LIKE $1 AND started_at > $2",
                    a_id,
                    more_at,
                )

            back_s = await wait_for("A to claim a job after the heal", a_back, 60)
            await wait_for("the jobs enqueued after the heal", all_succeeded, 60)
            a_done = await conn.fetchval(
                "SELECT count(*) FROM job_runs WHERE worker_id LIKE $1 AND started_at > $2"
                " AND status = 'succeeded'",
                a_id,
                healed_at,
            )
            assert a_done >= 1, "A claimed after the heal but completed nothing"

            assert_alive([a, b], [log_a, log_b])
            await asyncio.to_thread(procs.stop_all, 60)
            codes = [a.returncode, b.returncode]
            assert codes == [0, 0], f"exit codes after SIGTERM: {codes}\n{tail(log_a)}"
            report = await check_invariants(conn, ids, procs.exec_dir)
            late = late_count()
        finally:
            await client.close()
            await conn.close()
            if not c.own:
                await asyncio.to_thread(procs.stop_all)
                await drop_schema(c.dsn, schema)

    record_result(
        "cut_connections_partition",
        {
            "jobs": report.jobs,
            "job_ms": JOB_MS,
            "lease_s": 2,
            "leases_held_by_partitioned_worker": len(held_runs),
            "abandoned_runs": report.abandoned_runs,
            "extra_executions": report.extra_executions,
            "late_completions_rejected": late,
            "partition_s": round(partition_s, 1),
            "cut_to_rerun_elsewhere_s": round(float(recovery["rerun"]), 3),
            "cut_to_completed_elsewhere_s": round(float(recovery["done"]), 3),
            "after_heal_enqueue_to_partitioned_worker_claim_s": round(float(back_s), 3),
        },
    )
