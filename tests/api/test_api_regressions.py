"""Regression tests for HTTP API bugs found while writing the API tests: each failed before
its fix and guards against its return."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_support import ApiServer, assert_error, assert_ok

from foreman_rt import Client, db

pytestmark = pytest.mark.db


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_last_event_id_of_non_ascii_digits_is_ignored(http: httpx.AsyncClient) -> None:
    job = assert_ok(await http.post("/jobs", json={"kind": "k"}), 201)
    assert_ok(await http.post(f"/jobs/{job['id']}/cancel"))  # terminal: a finite stream
    r = await http.get(f"/events/{job['id']}", headers={"Last-Event-ID": b"\xb2"})
    assert r.status_code == 200, r.text
    assert '"status": "cancelled"' in r.text


@pytest.mark.e2e
async def test_tenant_stream_survives_an_out_of_range_last_event_id(api: ApiServer) -> None:
    async with (
        api.client() as http,
        http.stream("GET", "/events", headers={"Last-Event-ID": "9" * 30}) as r,
    ):
        assert r.status_code == 200
        lines = r.aiter_lines()
        assert await anext(lines) == ": stream open"


async def test_deeply_nested_params_are_not_a_500_after_the_row_is_written(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    body = {"kind": "k", "params": nested(300)}
    r = await http.post("/jobs", json=body)
    assert r.status_code in (201, 400), f"{r.status_code}: {r.text}"
    if r.status_code == 400:
        assert_error(r, 400, "invalid_params")
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_deeply_nested_job_does_not_break_listing(
    http: httpx.AsyncClient, client: Client
) -> None:
    # The Python client refuses params this deep; another language's SQL enqueue need not.
    deep_id = await client.pool.fetchval(
        "SELECT enqueue('k', $1::text::jsonb)", json.dumps({"tree": nested(300)})
    )
    await client.enqueue("k", {"plain": True})
    r = await http.get("/jobs")
    assert r.status_code == 200, r.text
    assert assert_ok(await http.get(f"/jobs/{deep_id}"))["id"] == str(deep_id)


async def test_complete_with_a_deeply_nested_result_answers_what_it_did(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    job = assert_ok(await http.post("/jobs", json={"kind": "k"}), 201)
    assert_ok(await http.post("/jobs/claim", json={"kinds": ["k"], "worker_id": "w"}))
    r = await http.post(
        f"/jobs/{job['id']}/complete", json={"worker_id": "w", "result": nested(300)}
    )
    status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1", int(job["id"]))
    if status == "succeeded":
        assert r.status_code == 200, f"the job succeeded but the worker got {r.status_code}"
    else:
        assert_error(r, 400)
