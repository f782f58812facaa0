"""Load: 500 concurrent HTTP producers (one keep-alive connection each, see
support.HttpConnection for why not httpx) against a real `foreman-rt api` (rate limits raised out
of the way) for 30 s (300 s in the long form) while two worker processes drain. Each producer
enqueues jobs with idempotency keys of its own; about 5% of requests re-send a key whose 201
already came back, and must get 409 `duplicate_idempotency_key` with the same job id.

Asserted: every key maps to exactly one job, and to the id its 201 returned; every 201'd job
exists and succeeded; no two jobs share a key; no job succeeded twice (check_invariants); no
request failed (any status but 201/409, a wrong 409, or a transport error counts as an error,
and the first ones are shown). Reported: throughput, enqueue latency p50/p99, error rate."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from harness import (
    check_invariants,
    cluster,
    fresh_schema,
    processes,
    record_result,
    scale,
    wait_until_terminal,
)
from support import HttpConnection, ms, percentile, start_api

from foreman_rt import db, keys

PRODUCERS = 500
DURATION = scale(30, 300)  # seconds of load
DUPLICATE_SHARE = 0.05  # requests that deliberately re-send an earlier key
WORKERS = 2
WORKER_OPTIONS = ("--concurrency", "32", "--poll-interval", "1")
DRAIN = scale(240, 1200)  # bound for the backlog to drain once the producers stop

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(int(DURATION + DRAIN + 180))]


class Load:
    """What the producers share: keys whose 201 came back, latencies, and every error."""

    def __init__(self, base: str, headers: dict[str, str], stop_at: float) -> None:
        self.base = base
        self.headers = headers
        self.stop_at = stop_at
        self.created: dict[str, int] = {}  # key -> id from its 201
        self.issued: list[tuple[str, int]] = []  # the same, in a list to pick from
        self.latency_201: list[float] = []
        self.latency_409: list[float] = []
        self.errors: list[str] = []
        self.requests = 0

    async def producer(self, n: int) -> None:
        rng = random.Random(n)
        seq = 0
        http = HttpConnection(self.base, self.headers)  # one keep-alive connection each
        while time.monotonic() < self.stop_at:
            if self.issued and rng.random() < DUPLICATE_SHARE:
                key, expected_id = rng.choice(self.issued)
            else:
                key, expected_id = f"p{n}-{seq}", None
                seq += 1
            body = {"kind": "rel.work", "idempotency_key": key}
            self.requests += 1
            started = time.perf_counter()
            try:
                status, data = await http.post("/foreman/jobs", body)
            except Exception as exc:  # transport errors and unreadable replies count
                self.errors.append(f"{key}: {type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - started
            self.check(key, expected_id, status, data if isinstance(data, dict) else {}, took)
        http.close()

    def check(
        self, key: str, expected_id: int | None, status: int, data: dict[str, Any], took: float
    ) -> None:
        if expected_id is None and status == 201:
            self.created[key] = int(data["id"])
            self.issued.append((key, int(data["id"])))
            self.latency_201.append(took)
        elif (
            expected_id is not None
            and status == 409
            and data.get("code") == "duplicate_idempotency_key"
            and int(data["job"]["id"]) == expected_id
        ):
            self.latency_409.append(took)
        else:
            want = "201" if expected_id is None else f"409 with job {expected_id}"
            self.errors.append(f"{key}: wanted {want}, got {status} {str(data)[:200]}")


async def test_500_http_producers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    schema = "chaos_load_" + secrets.token_hex(3)
    with cluster() as c, processes(c.dsn, schema) as procs:
        await fresh_schema(c.dsn, schema)
        conn = await db.connect(c.dsn, schema)
        try:
            secret, _ = await keys.create(conn, "load", name="load test")
            for i in range(WORKERS):
                procs.start_worker(*WORKER_OPTIONS, output=tmp_path / f"worker{i}.log")
            api = await start_api(
                procs, "--rate", "100000", "--burst", "100000", output=tmp_path / "api.log"
            )
            headers = {"Authorization": f"Bearer {secret}"}
            started = time.monotonic()
            load = Load(api.base, headers, started + DURATION)
            await asyncio.gather(*(load.producer(n) for n in range(PRODUCERS)))
            elapsed = time.monotonic() - started
            backlog = await conn.fetchval("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
            drain_started = time.monotonic()
            await wait_until_terminal(conn, len(load.created), DRAIN)
            drain_s = time.monotonic() - drain_started

            assert api.proc.poll() is None, f"the API died:\n{api.log()[-3000:]}"
            assert len(procs.alive_workers()) == WORKERS, "a worker died"
            stored = {
                r["idempotency_key"]: r["id"]
                for r in await conn.fetch("SELECT idempotency_key, id FROM jobs")
            }
            shared = await conn.fetch(
                "SELECT idempotency_key, count(*) FROM jobs GROUP BY idempotency_key"
                " HAVING count(*) > 1 LIMIT 5"
            )
            assert not shared, f"jobs sharing a key: {[tuple(r) for r in shared]}"
            wrong = [k for k, i in load.created.items() if stored.get(k) != i][:5]
            assert not wrong, f"keys whose job is not the one their 201 returned: {wrong}"
            report = await check_invariants(conn, list(load.created.values()), procs.exec_dir)
        finally:
            await conn.close()
        total = load.requests
        figures = {
            "producers": PRODUCERS,
            "duration_s": round(elapsed, 1),
            "requests": total,
            "created_201": len(load.created),
            "duplicates_409": len(load.latency_409),
            "errors": len(load.errors),
            "error_rate": round(len(load.errors) / max(total, 1), 6),
            "requests_per_s": round(total / elapsed, 1),
            "jobs_per_s": round(len(load.created) / elapsed, 1),
            "latency_201_ms": {
                "p50": ms(percentile(load.latency_201, 50)),
                "p99": ms(percentile(load.latency_201, 99)),
            },
            "latency_409_ms": {
                "p50": ms(percentile(load.latency_409, 50)),
                "p99": ms(percentile(load.latency_409, 99)),
            },
            "backlog_at_stop": backlog,
            "drain_after_stop_s": round(drain_s, 1),
            "jobs_in_db": len(stored),
            "extra_executions": report.extra_executions,
        }
        record_result("load", figures)
        assert not load.errors, (
            f"{len(load.errors)} of {total} requests failed; first ones:\n"
            + "\n".join(load.errors[:10])
        )
        assert len(stored) == len(load.created), (
            f"{len(stored)} jobs for {len(load.created)} created keys"
        )
        procs.stop_all()  # before the schema goes, or the workers fail on missing tables
        admin = await db.connect(c.dsn, schema)  # passed: the shared server keeps nothing
        try:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await admin.close()
