"""API keys, tenants, scopes, revocation, rate limits and the bind-address guard, through
`foreman-rt keys …` and real `foreman-rt api` processes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_support import (
    KEEPALIVE,
    StartApi,
    assert_error,
    assert_ok,
    check_envelope,
    create_key,
    foreman,
    free_port,
    open_sse,
)

from foreman_rt import db
from foreman_rt.api import ServiceSettings, create_app

pytestmark = [pytest.mark.db, pytest.mark.e2e]

KEY_CACHE = 5.0  # the service caches key lookups this long


async def enqueue(http: httpx.AsyncClient, kind: str = "k", **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = assert_ok(await http.post("/jobs", json={"kind": kind, **fields}), 201)
    return job


async def test_keys_create_list_revoke_through_the_cli(pg_dsn: str, schema: str) -> None:
    made = await create_key(pg_dsn, schema, "A", "--name", "alpha")
    assert made["tenant"] == "A" and made["name"] == "alpha"
    assert set(made["scopes"]) == {"enqueue", "read", "work", "cancel"}
    assert made["prefix"] == made["key"][:12] and made["revoked_at"] is None
    limited = await create_key(
        pg_dsn, schema, "B", "--scope", "read", "--rate", "2", "--burst", "3"
    )
    assert limited["scopes"] == ["read"]
    assert (limited["rate_per_second"], limited["burst"]) == (2.0, 3)

    listed = await foreman(pg_dsn, schema, "keys", "list", "--output", "json")
    keys = json.loads(listed.stdout)
    assert [k["id"] for k in keys] == [limited["id"], made["id"]]
    assert all("key" not in k for k in keys)
    assert made["key"] not in listed.stdout and limited["key"] not in listed.stdout
    table = await foreman(pg_dsn, schema, "keys", "list")
    assert made["prefix"] in table.stdout and made["key"] not in table.stdout

    revoked = await foreman(pg_dsn, schema, "keys", "revoke", made["id"])
    assert f"revoked key {made['id']}" in revoked.stdout
    keys = json.loads((await foreman(pg_dsn, schema, "keys", "list", "--output", "json")).stdout)
    assert {k["id"]: k["revoked_at"] is not None for k in keys} == {
        made["id"]: True,
        limited["id"]: False,
    }
    missing = await foreman(pg_dsn, schema, "keys", "revoke", "424242", code=None)
    assert missing.returncode == 3 and "key_not_found" in missing.stderr
    bad = await foreman(pg_dsn, schema, "keys", "create", "--tenant", "bad tenant", code=None)
    assert bad.returncode == 2 and "invalid_tenant" in bad.stderr


async def test_requests_without_a_valid_key_are_401_once_keys_exist(
    pg_dsn: str, schema: str, start_api: StartApi
) -> None:
    key = (await create_key(pg_dsn, schema, "A"))["key"]
    api = await start_api()
    async with api.client() as anon:
        assert_ok(await anon.get("/ping"))  # liveness needs no key
        for method, path in [
            ("GET", "/jobs"),
            ("POST", "/jobs"),
            ("GET", "/jobs/1"),
            ("POST", "/claim"),
            ("POST", "/jobs/claim"),
            ("POST", "/jobs/1/complete"),
            ("POST", "/runs/1/heartbeat"),
            ("POST", "/jobs/1/cancel"),
            ("GET", "/runs"),
            ("GET", "/events/1"),
            ("GET", "/events"),
        ]:
            body = {"kind": "k"} if method == "POST" else None
            assert_error(await anon.request(method, path, json=body), 401, "unauthorized")
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "Token abc", key):
            r = await anon.get("/jobs", headers={"Authorization": header})
            assert_error(r, 401, "unauthorized")
        r = await anon.get("/jobs", headers={"Authorization": "Bearer frt_not-a-real-key"})
        assert_error(r, 401, "invalid_api_key")
        r = await anon.get("/jobs", headers={"Authorization": f"bearer {key}"})
        assert_ok(r)  # the scheme is case-insensitive
    async with api.client(key) as http:
        assert assert_ok(await http.get("/jobs")) == []


async def test_tenant_a_cannot_see_or_touch_tenant_bs_jobs(
    pg_dsn: str, schema: str, start_api: StartApi, conn: db.Connection
) -> None:
    key_a = (await create_key(pg_dsn, schema, "A"))["key"]
    key_b = (await create_key(pg_dsn, schema, "B"))["key"]
    api = await start_api()
    async with api.client(key_a) as a, api.client(key_b) as b:
        jb = await enqueue(b, "shared", idempotency_key="same-key")
        jb_pending = await enqueue(b, "shared")
        assert jb["tenant"] == "B"
        claimed = assert_ok(
            await b.post("/jobs/claim", json={"kinds": ["shared"], "worker_id": "wb"})
        )
        assert claimed["job"]["id"] == jb["id"]
        run_id = claimed["run"]["id"]
        ja = await enqueue(a, "own")
        assert ja["tenant"] == "A"
        before = await conn.fetch("SELECT * FROM jobs ORDER BY id")
        runs_before = await conn.fetch("SELECT * FROM job_runs ORDER BY id")

        for path in (f"/jobs/{jb['id']}", f"/jobs/{jb['id']}/runs", f"/events/{jb['id']}"):
            assert_error(await a.get(path), 404, "job_not_found")
        assert_error(await a.post(f"/jobs/{jb['id']}/cancel"), 404, "job_not_found")
        assert_error(await a.get(f"/runs/{run_id}"), 404, "run_not_found")
        lease_bodies = {
            "heartbeat": {"worker_id": "wb", "progress_current": 9},
            "complete": {"worker_id": "wb", "result": "stolen"},
            "fail": {"worker_id": "wb", "error": "stolen"},
        }
        for action, body in lease_bodies.items():
            r = await a.post(f"/jobs/{jb['id']}/{action}", json=body)
            assert_error(r, 404, "job_not_found")
            r = await a.post(f"/runs/{run_id}/{action}", json=body)
            assert_error(r, 404, "run_not_found")

        assert [j["id"] for j in assert_ok(await a.get("/jobs"))] == [ja["id"]]
        assert assert_ok(await a.get("/jobs", params={"kind": "shared"})) == []
        assert assert_ok(await a.get("/runs")) == []
        assert assert_ok(await a.get("/runs", params={"job_id": jb["id"]})) == []
        for route in ("/claim", "/jobs/claim"):
            r = await a.post(route, json={"kinds": ["shared"], "worker_id": "wa"})
            assert r.status_code == 204, r.text

        assert await conn.fetch("SELECT * FROM jobs ORDER BY id") == before
        assert await conn.fetch("SELECT * FROM job_runs ORDER BY id") == runs_before

        # Idempotency keys are per tenant: A's key does not collide with B's job.
        mine = await enqueue(a, "shared", idempotency_key="same-key")
        assert mine["id"] != jb["id"] and mine["tenant"] == "A"

        # B still owns and sees everything of its own.
        assert {j["id"] for j in assert_ok(await b.get("/jobs"))} == {jb["id"], jb_pending["id"]}
        hb = assert_ok(await b.post(f"/runs/{run_id}/heartbeat", json={"worker_id": "wb"}))
        assert hb["cancel_requested"] is False

        # A's tenant stream shows none of B's changes.
        async with open_sse(a, "/events") as stream:
            assert (await stream.next()).comment == "stream open"  # type: ignore[union-attr]
            assert_ok(await b.post(f"/jobs/{jb['id']}/complete", json={"worker_id": "wb"}))
            assert_ok(await b.post(f"/jobs/{jb_pending['id']}/cancel"))
            assert_ok(await a.post(f"/jobs/{ja['id']}/cancel"))
            event = await stream.next_event()
            rest = await stream.collect(3 * KEEPALIVE)
        assert (event.data["id"], event.data["status"]) == (ja["id"], "cancelled")
        assert [i for i in rest if i.is_event] == []


async def test_scopes_are_enforced(pg_dsn: str, schema: str, start_api: StartApi) -> None:
    reader = (await create_key(pg_dsn, schema, "A", "--scope", "read"))["key"]
    worker = (await create_key(pg_dsn, schema, "A", "--scope", "work"))["key"]
    full = (await create_key(pg_dsn, schema, "A"))["key"]
    api = await start_api()
    async with api.client(reader) as ro, api.client(worker) as wk, api.client(full) as rw:
        assert_error(await ro.post("/jobs", json={"kind": "k"}), 403, "forbidden_scope")
        assert assert_ok(await ro.get("/jobs")) == []
        job = await enqueue(rw, "k")
        assert [j["id"] for j in assert_ok(await ro.get("/jobs"))] == [job["id"]]
        claim = {"kinds": ["k"], "worker_id": "w"}
        assert_error(await ro.post("/jobs/claim", json=claim), 403, "forbidden_scope")
        assert_error(await ro.post(f"/jobs/{job['id']}/cancel"), 403, "forbidden_scope")
        assert_error(await wk.get("/jobs"), 403, "forbidden_scope")
        assert_error(await wk.post("/jobs", json={"kind": "k"}), 403, "forbidden_scope")
        claimed = assert_ok(await wk.post("/jobs/claim", json=claim))
        assert claimed["job"]["id"] == job["id"]
        r = await ro.post(f"/jobs/{job['id']}/complete", json={"worker_id": "w"})
        assert_error(r, 403, "forbidden_scope")
        done = assert_ok(await wk.post(f"/jobs/{job['id']}/complete", json={"worker_id": "w"}))
        assert done["status"] == "succeeded"


async def poll_until_status(
    http: httpx.AsyncClient, status: int, headers: dict[str, str] | None = None, limit: float = 10
) -> tuple[float, httpx.Response]:
    """GET /jobs every 100 ms until `status`; (seconds waited, the reply)."""
    start = time.monotonic()
    while True:
        r = await http.get("/jobs", headers=headers or {})
        if r.status_code == status:
            return time.monotonic() - start, r
        assert r.status_code == 200, r.text
        assert time.monotonic() - start < limit, f"still {r.status_code} after {limit} s"
        await asyncio.sleep(0.1)


async def test_a_revoked_key_stops_working_within_the_cache_time(
    pg_dsn: str, schema: str, start_api: StartApi
) -> None:
    doomed = await create_key(pg_dsn, schema, "A")
    other = await create_key(pg_dsn, schema, "A")
    api = await start_api()
    async with api.client(doomed["key"]) as http, api.client(other["key"]) as still:
        assert_ok(await http.get("/jobs"))  # now cached by the service
        await foreman(pg_dsn, schema, "keys", "revoke", doomed["id"])
        waited, r = await poll_until_status(http, 401)
        assert_error(r, 401, "invalid_api_key")
        assert waited <= KEY_CACHE + 1.0, waited
        assert_ok(await still.get("/jobs"))


async def test_keys_created_while_serving_end_keyless_access_within_the_cache_time(
    pg_dsn: str, schema: str, start_api: StartApi
) -> None:
    api = await start_api()
    async with api.client() as anon:
        assert_ok(await anon.get("/jobs"))  # no keys yet: loopback is served keyless
        key = (await create_key(pg_dsn, schema, "A"))["key"]
        waited, r = await poll_until_status(anon, 401)
        assert_error(r, 401, "unauthorized")
        assert waited <= KEY_CACHE + 1.0, waited
        assert_ok(await anon.get("/jobs", headers={"Authorization": f"Bearer {key}"}))


async def test_rate_limit_per_key(pg_dsn: str, schema: str, start_api: StartApi) -> None:
    slow = (await create_key(pg_dsn, schema, "A", "--rate", "1", "--burst", "2"))["key"]
    other = (await create_key(pg_dsn, schema, "A"))["key"]
    api = await start_api()
    async with api.client(slow) as http, api.client(other) as free:
        assert_ok(await http.get("/jobs"))
        assert_ok(await http.get("/jobs"))
        r = await http.get("/jobs")
        body = assert_error(r, 429, "rate_limit_exceeded")
        retry_after = int(r.headers["Retry-After"])
        assert 1 <= retry_after <= 2, r.headers
        assert body.get("retry_after") == retry_after
        assert_error(await http.post("/jobs", json={"kind": "k"}), 429, "rate_limit_exceeded")
        for _ in range(5):
            assert_ok(await free.get("/jobs"))  # buckets are per key
        await asyncio.sleep(retry_after + 0.1)
        assert_ok(await http.get("/jobs"))


async def test_non_loopback_bind_without_keys_refuses_to_start(pg_dsn: str, schema: str) -> None:
    port = str(free_port())
    proc = await foreman(
        pg_dsn, schema, "api", "--host", "0.0.0.0", "--port", port, code=None, timeout=30
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--insecure-no-auth" in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


async def test_non_loopback_bind_with_insecure_no_auth_starts(start_api: StartApi) -> None:
    api = await start_api("--host", "0.0.0.0", "--insecure-no-auth")
    async with api.client() as anon:
        assert assert_ok(await anon.get("/jobs")) == []
    assert "--insecure-no-auth" in api.log()


async def test_non_loopback_bind_with_keys_starts_and_requires_them(
    pg_dsn: str, schema: str, start_api: StartApi
) -> None:
    key = (await create_key(pg_dsn, schema, "A"))["key"]
    api = await start_api("--host", "0.0.0.0")
    async with api.client() as anon, api.client(key) as http:
        assert_error(await anon.get("/jobs"), 401, "unauthorized")
        assert_ok(await http.get("/jobs"))


@pytest.fixture
async def remote_app(
    pg_dsn: str, schema: str, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process, called from a non-loopback address (10.1.2.3)."""
    insecure = bool(getattr(request, "param", False))
    app = create_app(
        ServiceSettings(dsn=pg_dsn, schema=schema, insecure_no_auth=insecure), lifespan=False
    )
    await app.state.foreman.start()
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver/foreman",
            event_hooks={"response": [check_envelope]},
        ) as client:
            yield client
    finally:
        await app.state.foreman.stop()


async def test_remote_client_without_keys_is_refused(remote_app: httpx.AsyncClient) -> None:
    assert_error(await remote_app.get("/jobs"), 403, "loopback_only")
    assert_error(await remote_app.post("/jobs", json={"kind": "k"}), 403, "loopback_only")
    assert_ok(await remote_app.get("/ping"))


@pytest.mark.parametrize("remote_app", [True], indirect=True)
async def test_remote_client_is_served_with_insecure_no_auth(
    remote_app: httpx.AsyncClient,
) -> None:
    job = assert_ok(await remote_app.post("/jobs", json={"kind": "k"}), 201)
    assert job["tenant"] == "default"
