"""Regression tests for two gaps found while writing the API tests: the service now takes part
in the reaper's leader election, and tenant streams show newly created jobs."""

from __future__ import annotations

import asyncio

import pytest
from api_support import ApiServer, assert_ok, open_sse

pytestmark = pytest.mark.db


@pytest.mark.e2e
async def test_http_only_deployment_reaps_an_abandoned_lease(api: ApiServer) -> None:
    async with api.client() as http:
        job = assert_ok(await http.post("/jobs", json={"kind": "k"}), 201)
        body = {"kinds": ["k"], "worker_id": "crashed", "lease_seconds": 0.5}
        assert_ok(await http.post("/jobs/claim", json=body))
        # The worker dies here: no heartbeat, no complete.
        deadline = asyncio.get_running_loop().time() + 8.0
        while asyncio.get_running_loop().time() < deadline:
            job = assert_ok(await http.get(f"/jobs/{job['id']}"))
            if job["status"] != "running":
                break
            await asyncio.sleep(0.2)
        assert job["status"] == "pending", "the expired lease was never reaped"
        runs = assert_ok(await http.get(f"/jobs/{job['id']}/runs"))
        assert [r["status"] for r in runs] == ["abandoned"]


@pytest.mark.e2e
async def test_tenant_stream_shows_a_newly_enqueued_job(api: ApiServer) -> None:
    async with api.client() as http, open_sse(http, "/events") as stream:
        opened = await stream.next()
        assert opened is not None and opened.comment == "stream open"
        job = assert_ok(await http.post("/jobs", json={"kind": "k"}), 201)
        event = await stream.next_event(timeout=3)
        assert (event.data["id"], event.data["status"]) == (job["id"], "pending")
