"""changed_since.sql, the query behind a resumed tenant stream: every state of job, only the
tenant's, only changes after the given time, oldest first, filters and limit, and each branch
read through its index (migration 0011)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from foreman_rt import db
from foreman_rt.sql import query

pytestmark = pytest.mark.db

T0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")


async def _job(
    conn: db.Connection,
    status: str,
    minutes: int,
    *,
    tenant: str = "acme",
    queue: str = "default",
    kind: str = "k",
) -> int:
    """A job whose last change was `minutes` after T0, in `status`."""
    at = T0 + timedelta(minutes=minutes)
    running = status == "running"
    terminal = status in ("succeeded", "failed", "cancelled")
    job_id: int = await conn.fetchval(
        """INSERT INTO jobs (kind, queue, tenant, status, enqueued_at, updated_at, started_at,
                             completed_at, attempt_count, run_id, worker_id, lease_expires_at,
                             attempt_started_at, run_updated_at)
           VALUES ($1, $2, $3, $4, $5::timestamptz - interval '1 hour', $5, CASE WHEN $6 OR $7 THEN $5 END,
                   CASE WHEN $7 THEN $5 END, CASE WHEN $6 OR $7 THEN 1 ELSE 0 END,
                   CASE WHEN $6 THEN nextval('finished_runs_id_seq') END,
                   CASE WHEN $6 THEN 'w' END, CASE WHEN $6 THEN now() + interval '1 hour' END,
                   CASE WHEN $6 THEN $5 END, CASE WHEN $6 THEN $5 END)
           RETURNING id""",
        kind,
        queue,
        tenant,
        status,
        at,
        running,
        terminal,
    )
    return job_id


async def _changed(
    conn: db.Connection,
    minutes: int,
    *,
    tenant: str = "acme",
    queue: str | None = None,
    kind: str | None = None,
    limit: int = 1000,
) -> list[int]:
    since = T0 + timedelta(minutes=minutes)
    rows = await conn.fetch(query("changed_since"), tenant, since, queue, kind, limit)
    return [r["id"] for r in rows]


async def test_every_state_changed_after_the_time_comes_back_oldest_first(
    conn: db.Connection,
) -> None:
    await _job(conn, "succeeded", 1)  # before the time asked for
    await _job(conn, "pending", 2)
    await _job(conn, "running", 3)
    expected = [
        await _job(conn, "failed", 11),
        await _job(conn, "pending", 12),
        await _job(conn, "running", 13),
        await _job(conn, "succeeded", 14),
        await _job(conn, "cancelled", 15),
        await _job(conn, "pending", 16),
        await _job(conn, "succeeded", 17),
    ]
    for status in ("pending", "running", "succeeded"):  # another tenant's changes
        await _job(conn, status, 20, tenant="other")
    assert await _changed(conn, 10) == expected
    assert await _changed(conn, 10, limit=3) == expected[:3]
    assert await _changed(conn, 14) == expected[4:]
    assert await _changed(conn, 30) == []


async def test_queue_and_kind_filters_apply_to_every_state(conn: db.Connection) -> None:
    wanted: list[int] = []
    for n, status in enumerate(("pending", "running", "succeeded", "failed")):
        wanted.append(await _job(conn, status, 10 + n, queue="mail", kind="send"))
        await _job(conn, status, 10 + n, queue="mail", kind="other")
        await _job(conn, status, 10 + n, queue="jobs", kind="send")
    assert await _changed(conn, 0, queue="mail", kind="send") == wanted
    assert len(await _changed(conn, 0, queue="mail")) == 8
    assert len(await _changed(conn, 0, kind="send")) == 8


async def test_a_job_counts_once_in_its_current_state(conn: db.Connection) -> None:
    job_id = await _job(conn, "pending", 10)
    await conn.execute(
        """UPDATE jobs SET status = 'succeeded', completed_at = $2, updated_at = $2
           WHERE id = $1""",
        job_id,
        T0 + timedelta(minutes=20),
    )
    assert await _changed(conn, 0) == [job_id]
    assert await _changed(conn, 20) == []


def _nodes(plan: Any) -> list[dict[str, Any]]:
    found, stack = [], [plan]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", []))
    return found


@pytest.mark.parametrize("plan_cache_mode", ["auto", "force_generic_plan"])
async def test_each_state_is_read_through_its_own_index(
    conn: db.Connection, plan_cache_mode: str
) -> None:
    """With many retained jobs of another tenant, no branch scans the table."""
    await conn.execute(
        """INSERT INTO jobs (kind, tenant, status, completed_at, updated_at)
           SELECT 'k', 'other', 'succeeded', t, t
           FROM generate_series(1, 20000) AS g,
                LATERAL (SELECT $1::timestamptz + g * interval '1 second') AS x(t)""",
        T0,
    )
    await conn.execute("ANALYZE jobs")
    await conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
    try:
        await conn.execute(f"PREPARE changed AS {query('changed_since')}")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) EXECUTE changed('acme', "
            f"'{(T0 + timedelta(hours=1)).isoformat()}', NULL, NULL, 1000)"
        )
    finally:
        await conn.execute("DEALLOCATE ALL")
        await conn.execute("RESET plan_cache_mode")
    nodes = _nodes(json.loads(plan)[0]["Plan"])
    seq = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    assert seq == [], f"the table is scanned: {seq}"
    indexes = {n["Index Name"] for n in nodes if "Index Name" in n}
    assert indexes == {"jobs_pending_changed", "jobs_lease", "jobs_completed"}, indexes
