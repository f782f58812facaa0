"""The worker's statements reach jobs by index even when their plan was made while the table was
empty: a session caches a generic plan, and one made for a tiny table scans it whole, for as long
as the session lives, however many finished jobs pile up. The worker's sessions therefore plan
with `db.WORKER_PLANNER`."""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
import pytest

from foreman_rt import Client, db
from foreman_rt.sql import query
from foreman_rt.worker.runtime import CLAIM_COLUMNS

pytestmark = pytest.mark.db

# What a worker runs against jobs: the runtime's statements, and the service's for HTTP workers
# and for its share of maintenance (both run on the service's worker pool).
STATEMENTS = [
    "claim",
    "complete_batch",
    "fail_batch",
    "heartbeat",
    "cancel_requested",
    "next_due",
    "reap",
    "retention",
    "http_claim",
    "http_complete",
    "http_fail",
    "http_heartbeat",
]


def _scans_of_jobs(plan: dict[str, Any]) -> list[str]:
    """Node types of every plan node that reads the jobs table."""
    found, stack = [], [plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "jobs":
            found.append(node["Node Type"])
        stack.extend(node.get("Plans", []))
    return found


async def _generic_plan(conn: asyncpg.Connection, name: str) -> list[str]:
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        await conn.execute(f"PREPARE s AS {query(name)}")
        sql = query(name)
        count = max(int(n) for n in re.findall(r"\$(\d+)", sql))  # a generic plan: NULLs do
        args = ", ".join(["NULL"] * count)
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE s({args})")
    finally:
        await conn.execute("DEALLOCATE ALL")
        await conn.execute("RESET plan_cache_mode")
    return _scans_of_jobs(json.loads(raw)[0]["Plan"])


async def _session(dsn: str, schema: str, extra: dict[str, str] | None) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings=db.server_settings(schema, "plans", extra))


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_worker_session_never_plans_a_scan_of_jobs(
    pg_dsn: str, schema: str, name: str
) -> None:
    """A fresh, never analyzed, empty table: the plan most likely to scan it."""
    conn = await _session(pg_dsn, schema, db.WORKER_PLANNER)
    try:
        scans = await _generic_plan(conn, name)
    finally:
        await conn.close()
    assert scans, "the statement does not read jobs"
    assert "Seq Scan" not in scans, scans


@pytest.mark.parametrize("name", ["claim", "http_claim"])
async def test_without_the_worker_settings_a_claim_would_scan_jobs(
    pg_dsn: str, schema: str, name: str
) -> None:
    """The trap the settings exist for, shown on this server: the same empty table and an
    ordinary session give the claims a sequential scan of jobs."""
    conn = await _session(pg_dsn, schema, None)
    try:
        scans = await _generic_plan(conn, name)
    finally:
        await conn.close()
    assert "Seq Scan" in scans, scans


async def test_the_claim_returns_the_columns_the_worker_unpacks(
    client: Client, conn: db.Connection
) -> None:
    """Worker._start unpacks a claimed row by position."""
    await client.enqueue("k")
    [row] = await conn.fetch(query("claim"), None, ["k"], 1, "w", 30.0)
    assert tuple(row.keys()) == CLAIM_COLUMNS
