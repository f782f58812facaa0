"""Crash storm: three worker processes drain a stream of short jobs while, every two seconds, a
random one is SIGKILLed and a fresh one started in its place, for the whole run. Afterwards:
every job succeeded exactly once (extra executions only where a run was abandoned), and for
each kill, how long the dead worker's jobs took to run again elsewhere."""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from harness import (
    check_invariants,
    cluster,
    drop_schema,
    fresh_schema,
    processes,
    record_result,
    scale,
)

from foreman_rt import Client, JobSpec, db

JOBS = int(scale(2_000, 10_000))
ENQUEUE_SECONDS = scale(20, 100)  # jobs arrive at a steady rate over this long
KILL_EVERY = 2.0
WORKERS = 3
WORKER_OPTIONS = ("--concurrency", "20", "--lease", "2", "--reap-interval", "0.2")
WORKER_OPTIONS += ("--leader-ttl", "2")
MAX_ATTEMPTS = 25  # a job may be caught in several kills; it must still end succeeded
BUDGET = scale(150, 600)  # seconds for the whole drain, generous for a loaded machine

pytestmark = pytest.mark.timeout(int(BUDGET + 120))


async def produce(client: Client, ids: list[int]) -> None:
    """Enqueue JOBS jobs of rel.work (0-50 ms each) evenly over ENQUEUE_SECONDS."""
    tick = 0.2
    per_tick = max(1, round(JOBS / (ENQUEUE_SECONDS / tick)))
    started = time.monotonic()
    while len(ids) < JOBS:
        n = min(per_tick, JOBS - len(ids))
        spec = JobSpec.build("rel.work", None, max_attempts=MAX_ATTEMPTS)
        ids.extend(e.id for e in await client.enqueue_many([spec] * n))
        due = started + tick * (len(ids) // per_tick)
        await asyncio.sleep(max(0.0, due - time.monotonic()))


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


async def recovery(conn: db.Connection, kills: list[tuple[int, datetime]]) -> dict[str, Any]:
    """For each kill: the runs the dead worker held (abandoned by the reaper after the kill)
    and when each one's job started its next run elsewhere; a kill's figure is its last."""
    per_kill: list[float] = []
    orphans = 0
    for pid, killed_at in kills:
        rows = await conn.fetch(
            "SELECT o.job_id, extract(epoch FROM n.started_at - $2::timestamptz) AS seconds"
            " FROM job_runs AS o"
            " LEFT JOIN job_runs AS n ON n.job_id = o.job_id AND n.attempt = o.attempt + 1"
            " WHERE o.worker_id LIKE $1 AND o.status = 'abandoned' AND o.finished_at >= $2",
            f"%:{pid}:%",
            killed_at,
        )
        if not rows:
            continue  # killed while idle or still starting
        late = [r["job_id"] for r in rows if r["seconds"] is None]
        assert not late, f"jobs of worker {pid} never ran again: {late[:5]}"
        orphans += len(rows)
        per_kill.append(max(float(r["seconds"]) for r in rows))
    return {
        "kills_holding_jobs": len(per_kill),
        "orphaned_runs": orphans,
        "kill_to_elsewhere_median_s": round(statistics.median(per_kill), 3) if per_kill else None,
        "kill_to_elsewhere_max_s": round(max(per_kill), 3) if per_kill else None,
    }


async def test_crash_storm(tmp_path: Path) -> None:
    schema = "rel_crash_" + secrets.token_hex(4)
    with cluster() as c, processes(c.dsn, schema) as procs:
        await fresh_schema(c.dsn, schema)
        conn = await db.connect(c.dsn, schema)
        client = await Client.connect(c.dsn, schema, max_size=2)
        started_workers = 0

        def start_worker() -> subprocess.Popen[bytes]:
            nonlocal started_workers
            started_workers += 1
            return procs.start_worker(
                *WORKER_OPTIONS, output=tmp_path / f"worker-{started_workers}.log"
            )

        try:
            for _ in range(WORKERS):
                start_worker()
            ids: list[int] = []
            killed: set[int] = set()
            kills: list[tuple[int, datetime]] = []
            leader_kills = 0
            rng = random.Random()
            t0 = time.monotonic()
            producer = asyncio.create_task(produce(client, ids))
            next_kill = t0 + KILL_EVERY
            while True:
                now = time.monotonic()
                dead = [p for p in procs.workers if p.pid not in killed and p.poll() is not None]
                assert not dead, f"a worker died on its own (exit {dead[0].returncode}):\n" + tail(
                    tmp_path / f"worker-{procs.workers.index(dead[0]) + 1}.log"
                )
                if producer.done():
                    producer.result()
                    done = await conn.fetchval(
                        "SELECT count(*) FROM jobs WHERE status <> 'pending'"
                        " AND status <> 'running'"
                    )
                    if done >= JOBS:
                        break
                if now - t0 > BUDGET:
                    by = dict(await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY 1"))
                    pytest.fail(f"not drained after {BUDGET:.0f}s: {by}, {len(kills)} kills")
                if now >= next_kill:
                    victim = rng.choice(procs.alive_workers())
                    leader = await conn.fetchval(
                        "SELECT holder FROM leaders WHERE role = 'maintenance'"
                        " AND expires_at > now()"
                    )
                    leader_kills += leader is not None and f":{victim.pid}:" in leader
                    victim.kill()
                    kills.append((victim.pid, await conn.fetchval("SELECT clock_timestamp()")))
                    killed.add(victim.pid)
                    await asyncio.to_thread(victim.wait, 10)
                    start_worker()
                    next_kill += KILL_EVERY
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - t0

            survivors = procs.alive_workers()
            await asyncio.to_thread(procs.stop_all, 60)
            codes = [p.returncode for p in survivors]
            # 0: drained and stopped; -SIGTERM: stopped while still importing (just restarted).
            assert all(code in (0, -15) for code in codes), f"worker exit codes on SIGTERM: {codes}"

            report = await check_invariants(conn, ids, procs.exec_dir)
            rec = await recovery(conn, kills)
            max_attempt = await conn.fetchval("SELECT max(attempt_count) FROM jobs")
        finally:
            await client.close()
            await conn.close()
            if not c.own:
                await asyncio.to_thread(procs.stop_all)
                await drop_schema(c.dsn, schema)

    figures = record_result(
        "crash_storm",
        {
            "jobs": report.jobs,
            "workers": WORKERS,
            "kill_every_s": KILL_EVERY,
            "kills": len(kills),
            "leader_kills": leader_kills,
            "runs": report.runs,
            "abandoned_runs": report.abandoned_runs,
            "executions": report.executions,
            "extra_executions": report.extra_executions,
            "max_attempts_used": max_attempt,
            "drain_seconds": round(elapsed, 1),
            **rec,
        },
    )
    assert figures["kills"] >= 3, "the storm was too short to mean anything"
    assert rec["kill_to_elsewhere_max_s"] is None or rec["kill_to_elsewhere_max_s"] < 60
