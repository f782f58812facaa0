"""Every non-streaming route of the HTTP API, in process on a real PostgreSQL: the happy paths,
the lease compare-and-set, 404s and 400s for ids, listing and pagination, metrics, OpenAPI.
Every error reply is checked for the {"error", "code"} envelope by the client's hook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from api_support import assert_error, assert_ok, wait_until

from foreman_rt import db

pytestmark = pytest.mark.db

LEASE_SCOPES = ["job", "run"]  # job-scoped (the reference README's) and run-scoped routes


async def enqueue(http: httpx.AsyncClient, kind: str = "k", **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = assert_ok(await http.post("/jobs", json={"kind": kind, **fields}), 201)
    return job


async def claim(
    http: httpx.AsyncClient,
    kinds: tuple[str, ...] = ("k",),
    worker: str = "w1",
    route: str = "/jobs/claim",
    **fields: Any,
) -> dict[str, Any]:
    body = {"kinds": list(kinds), "worker_id": worker, **fields}
    claimed: dict[str, Any] = assert_ok(await http.post(route, json=body), 200)
    return claimed


def lease_path(scope: str, claimed: dict[str, Any], action: str) -> str:
    if scope == "job":
        return f"/jobs/{claimed['job']['id']}/{action}"
    return f"/runs/{claimed['run']['id']}/{action}"


async def job_row(conn: db.Connection, job_id: str | int) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", int(job_id))
    assert row is not None
    return dict(row)


async def run_rows(conn: db.Connection, job_id: str | int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM job_runs WHERE job_id = $1 ORDER BY id", int(job_id))
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# ping, enqueue


async def test_ping(http: httpx.AsyncClient) -> None:
    body = assert_ok(await http.get("/ping"))
    assert body["message"].startswith("foreman-rt v")
    assert body["message"].endswith("is online!")


async def test_enqueue_returns_201_and_the_stored_job(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    job = await enqueue(
        http,
        "send-email",
        params={"to": "x@y.com"},
        queue="mail",
        service="billing",
        priority=5,
        max_attempts=4,
        idempotency_key="email-42",
    )
    assert isinstance(job["id"], str) and job["id"].isdigit()
    assert job["kind"] == "send-email"
    assert job["params"] == {"to": "x@y.com"}
    assert (job["queue"], job["service"], job["tenant"]) == ("mail", "billing", "default")
    assert (job["priority"], job["max_attempts"], job["attempt_count"]) == (5, 4, 0)
    assert job["status"] == "pending"
    assert job["idempotency_key"] == "email-42"
    row = await job_row(conn, job["id"])
    assert row["params"] == {"to": "x@y.com"}
    assert row["status"] == "pending" and row["tenant"] == "default"

    defaults = await enqueue(http, "other")
    assert defaults["params"] == {} and defaults["queue"] == "default"
    assert defaults["priority"] == 0 and defaults["max_attempts"] == 3
    assert "idempotency_key" not in defaults


async def test_enqueue_scheduled_in_the_future_is_not_claimable(http: httpx.AsyncClient) -> None:
    await enqueue(http, "later", scheduled_at="2999-01-01T00:00:00Z")
    r = await http.post("/jobs/claim", json={"kinds": ["later"], "worker_id": "w"})
    assert r.status_code == 204 and r.content == b""


async def test_duplicate_idempotency_key_is_409_with_the_existing_job(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    first = await enqueue(http, "send-email", params={"n": 1}, idempotency_key="email-42")
    r = await http.post(
        "/jobs", json={"kind": "send-email", "params": {"n": 2}, "idempotency_key": "email-42"}
    )
    body = assert_error(r, 409, "duplicate_idempotency_key")
    assert body["job"]["id"] == first["id"]
    assert body["job"]["params"] == {"n": 1}
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 1
    # The key is per kind: another kind may use it.
    await enqueue(http, "send-sms", idempotency_key="email-42")


# ---------------------------------------------------------------------------------------------
# claim


@pytest.mark.parametrize("route", ["/claim", "/jobs/claim"])
async def test_claim_returns_job_and_run_then_204_when_empty(
    http: httpx.AsyncClient, conn: db.Connection, route: str
) -> None:
    job = await enqueue(http, "send-email")
    claimed = await claim(http, ("send-email",), "worker-1", route, lease_seconds=45)
    assert set(claimed) == {"job", "run"}
    assert claimed["job"]["id"] == job["id"]
    assert claimed["job"]["status"] == "running" and claimed["job"]["attempt_count"] == 1
    run = claimed["run"]
    assert run["job_id"] == job["id"] and isinstance(run["id"], str)
    assert (run["attempt"], run["worker_id"], run["status"]) == (1, "worker-1", "running")
    (row,) = await run_rows(conn, job["id"])
    lease = row["lease_expires_at"] - row["started_at"]
    assert abs(lease - timedelta(seconds=45)) < timedelta(seconds=1), lease

    r = await http.post(route, json={"kinds": ["send-email"], "worker_id": "worker-1"})
    assert r.status_code == 204 and r.content == b""
    r = await http.post(route, json={"kinds": [], "worker_id": "worker-1"})
    assert r.status_code == 204 and r.content == b""


async def test_claim_without_lease_uses_the_default_lease(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    job = await enqueue(http)
    await claim(http)
    (row,) = await run_rows(conn, job["id"])
    lease = row["lease_expires_at"] - row["started_at"]
    assert abs(lease - timedelta(seconds=60)) < timedelta(seconds=1), lease


async def test_claim_respects_kinds_queues_and_priority(http: httpx.AsyncClient) -> None:
    low = await enqueue(http, "a", queue="q1", priority=1)
    high = await enqueue(http, "a", queue="q1", priority=9)
    other_queue = await enqueue(http, "a", queue="q2", priority=100)
    await enqueue(http, "b", priority=1000)
    first = await claim(http, ("a",), queues=["q1"])
    second = await claim(http, ("a",), queues=["q1"])
    assert [first["job"]["id"], second["job"]["id"]] == [high["id"], low["id"]]
    r = await http.post("/jobs/claim", json={"kinds": ["a"], "queues": ["q1"], "worker_id": "w"})
    assert r.status_code == 204
    third = await claim(http, ("a",))
    assert third["job"]["id"] == other_queue["id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kinds": ["k"]}, "invalid_request"),
        ({"kinds": ["k"], "worker_id": ""}, "invalid_request"),
        ({"worker_id": "w"}, "invalid_request"),
        ({"kinds": "k", "worker_id": "w"}, "invalid_request"),
        ({"kinds": ["bad kind"], "worker_id": "w"}, "invalid_kind"),
        ({"kinds": ["k"], "queues": [""], "worker_id": "w"}, "invalid_queue"),
        ({"kinds": ["k"], "worker_id": "w", "lease_seconds": "long"}, "invalid_request"),
        ({"kinds": ["k"], "worker_id": "w", "extra": 1}, "invalid_request"),
        ({"kinds": ["k"], "worker_id": "w\u0000"}, "invalid_value"),
    ],
)
async def test_bad_claims_are_400_and_claim_nothing(
    http: httpx.AsyncClient, conn: db.Connection, body: dict[str, Any], code: str
) -> None:
    await enqueue(http)
    assert_error(await http.post("/jobs/claim", json=body), 400, code)
    assert await conn.fetchval("SELECT count(*) FROM job_runs") == 0
    assert await conn.fetchval("SELECT status FROM jobs") == "pending"


# ---------------------------------------------------------------------------------------------
# heartbeat, complete, fail (job- and run-scoped)


@pytest.mark.parametrize("scope", LEASE_SCOPES)
async def test_heartbeat_records_progress_and_renews_the_lease(
    http: httpx.AsyncClient, conn: db.Connection, scope: str
) -> None:
    await enqueue(http)
    claimed = await claim(http, lease_seconds=10)
    r = await http.post(
        lease_path(scope, claimed, "heartbeat"),
        json={
            "worker_id": "w1",
            "progress_current": 12,
            "progress_total": 100,
            "progress_message": "sending",
            "lease_seconds": 90,
        },
    )
    run = assert_ok(r)
    assert run["id"] == claimed["run"]["id"]
    assert (run["progress_current"], run["progress_total"]) == (12, 100)
    assert run["progress_message"] == "sending"
    assert run["cancel_requested"] is False
    (row,) = await run_rows(conn, claimed["job"]["id"])
    assert (row["progress_current"], row["progress_total"]) == (12, 100)
    left = row["lease_expires_at"] - row["updated_at"]
    assert abs(left - timedelta(seconds=90)) < timedelta(seconds=1), left

    # Progress fields left out keep their values.
    run = assert_ok(
        await http.post(lease_path(scope, claimed, "heartbeat"), json={"worker_id": "w1"})
    )
    assert (run["progress_current"], run["progress_total"]) == (12, 100)


@pytest.mark.parametrize("scope", LEASE_SCOPES)
async def test_complete_marks_run_and_job_succeeded(
    http: httpx.AsyncClient, conn: db.Connection, scope: str
) -> None:
    await enqueue(http)
    claimed = await claim(http)
    job = assert_ok(
        await http.post(
            lease_path(scope, claimed, "complete"),
            json={"worker_id": "w1", "result": {"sent": True}},
        )
    )
    assert job["id"] == claimed["job"]["id"]
    assert job["status"] == "succeeded" and job["result"] == {"sent": True}
    assert job["completed_at"] is not None
    (run,) = await run_rows(conn, job["id"])
    assert run["status"] == "succeeded" and run["lease_expires_at"] is None
    # Completing again is a lease conflict, not a second success.
    r = await http.post(lease_path(scope, claimed, "complete"), json={"worker_id": "w1"})
    assert_error(r, 409, "lease_lost")


@pytest.mark.parametrize("scope", LEASE_SCOPES)
async def test_fail_not_retryable_fails_the_job(
    http: httpx.AsyncClient, conn: db.Connection, scope: str
) -> None:
    await enqueue(http)
    claimed = await claim(http)
    job = assert_ok(
        await http.post(
            lease_path(scope, claimed, "fail"),
            json={"worker_id": "w1", "error": "bad address", "retryable": False},
        )
    )
    assert job["status"] == "failed" and job["error"] == "bad address"
    (run,) = await run_rows(conn, job["id"])
    assert run["status"] == "failed" and run["error"] == "bad address"


@pytest.mark.parametrize("scope", LEASE_SCOPES)
async def test_fail_retryable_with_attempts_left_is_pending_after_the_backoff(
    http: httpx.AsyncClient, conn: db.Connection, scope: str
) -> None:
    await enqueue(http, max_attempts=3)
    claimed = await claim(http)
    job = assert_ok(
        await http.post(
            lease_path(scope, claimed, "fail"),
            json={
                "worker_id": "w1",
                "error": "smtp timeout",
                "retryable": True,
                "backoff_seconds": 30,
                "result": {"partial": 1},
            },
        )
    )
    assert job["status"] == "pending" and job["error"] == "smtp timeout"
    assert job["completed_at"] is None
    row = await job_row(conn, job["id"])
    delay = row["scheduled_at"] - row["updated_at"]  # both the same statement's now()
    assert abs(delay - timedelta(seconds=30)) < timedelta(milliseconds=5), delay
    (run,) = await run_rows(conn, job["id"])
    assert run["status"] == "failed" and run["result"] == {"partial": 1}
    # Not claimable before the backoff has passed.
    r = await http.post("/jobs/claim", json={"kinds": ["k"], "worker_id": "w1"})
    assert r.status_code == 204


async def test_fail_retryable_without_backoff_uses_the_default_policy(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    await enqueue(http)
    claimed = await claim(http)
    r = await http.post(
        lease_path("job", claimed, "fail"), json={"worker_id": "w1", "retryable": True}
    )
    assert assert_ok(r)["status"] == "pending"
    row = await job_row(conn, claimed["job"]["id"])
    delay = (row["scheduled_at"] - row["updated_at"]).total_seconds()
    assert 0.5 <= delay <= 1.0, delay  # base 1 s for attempt 1, jitter 0.5-1


async def test_fail_retryable_on_the_last_attempt_fails_the_job(http: httpx.AsyncClient) -> None:
    await enqueue(http, max_attempts=1)
    claimed = await claim(http)
    r = await http.post(
        lease_path("run", claimed, "fail"), json={"worker_id": "w1", "retryable": True}
    )
    assert assert_ok(r)["status"] == "failed"


async def test_retry_then_success_leaves_two_runs(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    job = await enqueue(http)
    first = await claim(http, worker="w1")
    r = await http.post(
        lease_path("job", first, "fail"),
        json={"worker_id": "w1", "error": "smtp timeout", "retryable": True, "backoff_seconds": 0},
    )
    assert assert_ok(r)["status"] == "pending"
    second = await claim(http, worker="w2")
    assert second["run"]["attempt"] == 2 and second["job"]["attempt_count"] == 2
    assert second["run"]["id"] != first["run"]["id"]
    # The old run is finished: neither worker can use it any more.
    r = await http.post(lease_path("run", first, "complete"), json={"worker_id": "w1"})
    assert_error(r, 409, "lease_lost")
    done = assert_ok(
        await http.post(
            lease_path("run", second, "complete"), json={"worker_id": "w2", "result": 1}
        )
    )
    assert done["status"] == "succeeded" and done["result"] == 1

    runs = assert_ok(await http.get(f"/jobs/{job['id']}/runs"))
    assert [(r["attempt"], r["worker_id"], r["status"]) for r in runs] == [
        (1, "w1", "failed"),
        (2, "w2", "succeeded"),
    ]
    assert runs[0]["error"] == "smtp timeout" and runs[1]["result"] == 1
    assert all(r["job_id"] == job["id"] for r in runs)


@pytest.mark.parametrize("scope", LEASE_SCOPES)
@pytest.mark.parametrize("action", ["heartbeat", "complete", "fail"])
async def test_another_worker_gets_409_lease_lost_and_nothing_changes(
    http: httpx.AsyncClient, conn: db.Connection, scope: str, action: str
) -> None:
    await enqueue(http)
    claimed = await claim(http, worker="owner")
    job_id = claimed["job"]["id"]
    before = (await job_row(conn, job_id), await run_rows(conn, job_id))
    body: dict[str, Any] = {"worker_id": "intruder"}
    if action == "heartbeat":
        body |= {"progress_current": 1, "progress_total": 2, "lease_seconds": 3600}
    elif action == "complete":
        body |= {"result": {"stolen": True}}
    else:
        body |= {"error": "nope", "retryable": False}
    assert_error(await http.post(lease_path(scope, claimed, action), json=body), 409, "lease_lost")
    after = (await job_row(conn, job_id), await run_rows(conn, job_id))
    assert after == before


@pytest.mark.parametrize("action", ["heartbeat", "complete", "fail"])
async def test_lease_calls_on_a_pending_job_are_409(
    http: httpx.AsyncClient, conn: db.Connection, action: str
) -> None:
    job = await enqueue(http)
    r = await http.post(f"/jobs/{job['id']}/{action}", json={"worker_id": "w1"})
    assert_error(r, 409, "lease_lost")
    assert (await job_row(conn, job["id"]))["status"] == "pending"


async def test_heartbeat_after_the_lease_expired_is_409(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    await enqueue(http)
    claimed = await claim(http)
    await conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'"
    )
    r = await http.post(lease_path("job", claimed, "heartbeat"), json={"worker_id": "w1"})
    assert_error(r, 409, "lease_lost")


@pytest.mark.parametrize("action", ["heartbeat", "complete", "fail"])
async def test_unknown_and_malformed_ids_on_lease_routes(
    http: httpx.AsyncClient, action: str
) -> None:
    body = {"worker_id": "w1"}
    assert_error(await http.post(f"/jobs/424242/{action}", json=body), 404, "job_not_found")
    assert_error(await http.post(f"/runs/424242/{action}", json=body), 404, "run_not_found")
    for bad in ("abc", "0", "-1", "1.5", "99999999999999999999", "9223372036854775808"):
        assert_error(await http.post(f"/jobs/{bad}/{action}", json=body), 400, "invalid_job_id")
        assert_error(await http.post(f"/runs/{bad}/{action}", json=body), 400, "invalid_run_id")


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("heartbeat", {}),
        ("complete", {}),
        ("fail", {}),
        ("heartbeat", {"worker_id": ""}),
        ("complete", {"worker_id": 7}),
        ("heartbeat", {"worker_id": "w1", "progress_current": "many"}),
        ("heartbeat", {"worker_id": "w1", "progress_current": 2**63}),
        ("heartbeat", {"worker_id": "w1", "progress_message": "x" * 1001}),
        ("heartbeat", {"worker_id": "w1", "progress_message": "a\u0000b"}),
        ("fail", {"worker_id": "w1", "retryable": "perhaps"}),
        ("fail", {"worker_id": "w1", "backoff_seconds": -1}),
        ("fail", {"worker_id": "w1", "error": "e" * 16_001}),
        ("complete", {"worker_id": "w1", "result": {"k": "a\u0000"}}),
        ("complete", {"worker_id": "w1", "unknown": True}),
    ],
)
async def test_bad_lease_bodies_are_400_and_change_nothing(
    http: httpx.AsyncClient, conn: db.Connection, action: str, body: dict[str, Any]
) -> None:
    await enqueue(http)
    claimed = await claim(http)
    job_id = claimed["job"]["id"]
    before = (await job_row(conn, job_id), await run_rows(conn, job_id))
    for scope in LEASE_SCOPES:
        assert_error(await http.post(lease_path(scope, claimed, action), json=body), 400)
    assert (await job_row(conn, job_id), await run_rows(conn, job_id)) == before


async def test_non_ascii_digit_ids_are_400_not_500_nor_an_alias(http: httpx.AsyncClient) -> None:
    # Regression: parse_id took str.isdigit() for a number, so '\u00b2' crashed int() (500)
    # and Arabic-Indic '\u0661' was read as job 1.
    job = await enqueue(http)
    assert job["id"] == "1"
    for bad in ("\u00b2", "\u0661"):
        assert_error(await http.get(f"/jobs/{bad}"), 400, "invalid_job_id")
        assert_error(await http.get(f"/jobs/{bad}/runs"), 400, "invalid_job_id")
        assert_error(await http.post(f"/jobs/{bad}/cancel"), 400, "invalid_job_id")
        assert_error(await http.post(f"/jobs/{bad}/complete", json={"worker_id": "w"}), 400)
        assert_error(await http.post(f"/runs/{bad}/heartbeat", json={"worker_id": "w"}), 400)
        assert_error(await http.get(f"/runs/{bad}"), 400, "invalid_run_id")
        assert_error(await http.get(f"/events/{bad}"), 400, "invalid_job_id")
        assert_error(await http.get("/jobs", params={"cursor": bad}), 400, "invalid_cursor_id")
        assert_error(await http.get("/runs", params={"job_id": bad}), 400, "invalid_job_id")


# ---------------------------------------------------------------------------------------------
# cancel


async def test_cancel_pending_running_and_terminal(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    pending = await enqueue(http, "p")
    job = assert_ok(await http.post(f"/jobs/{pending['id']}/cancel"))
    assert job["status"] == "cancelled" and job["completed_at"] is not None
    r = await http.post("/jobs/claim", json={"kinds": ["p"], "worker_id": "w1"})
    assert r.status_code == 204

    await enqueue(http, "r")
    claimed = await claim(http, ("r",))
    job = assert_ok(await http.post(f"/jobs/{claimed['job']['id']}/cancel"))
    assert job["status"] == "running" and job["cancel_requested"] is True
    hb = assert_ok(
        await http.post(lease_path("job", claimed, "heartbeat"), json={"worker_id": "w1"})
    )
    assert hb["cancel_requested"] is True
    # A failure after a cancel request ends the job cancelled, even when retryable.
    job = assert_ok(
        await http.post(
            lease_path("job", claimed, "fail"),
            json={"worker_id": "w1", "error": "stopped", "retryable": True},
        )
    )
    assert job["status"] == "cancelled"

    await enqueue(http, "t")
    claimed = await claim(http, ("t",))
    assert_ok(await http.post(lease_path("run", claimed, "complete"), json={"worker_id": "w1"}))
    before = await job_row(conn, claimed["job"]["id"])
    job = assert_ok(await http.post(f"/jobs/{claimed['job']['id']}/cancel"))
    assert job["status"] == "succeeded" and job["cancel_requested"] is False
    assert await job_row(conn, claimed["job"]["id"]) == before


async def test_cancel_unknown_and_malformed(http: httpx.AsyncClient) -> None:
    assert_error(await http.post("/jobs/424242/cancel"), 404, "job_not_found")
    assert_error(await http.post("/jobs/abc/cancel"), 400, "invalid_job_id")


# ---------------------------------------------------------------------------------------------
# reading: jobs, runs


async def test_get_job_and_include_current_run(http: httpx.AsyncClient) -> None:
    pending = await enqueue(http, "p")
    job = assert_ok(await http.get(f"/jobs/{pending['id']}"))
    assert job == pending
    job = assert_ok(await http.get(f"/jobs/{pending['id']}", params={"include": "current_run"}))
    assert job["current_run"] is None

    await enqueue(http)
    claimed = await claim(http)
    job = assert_ok(
        await http.get(f"/jobs/{claimed['job']['id']}", params={"include": "current_run"})
    )
    assert job["current_run"]["id"] == claimed["run"]["id"]
    assert job["current_run"]["status"] == "running"

    assert_error(await http.get("/jobs/424242"), 404, "job_not_found")
    assert_error(await http.get("/jobs/abc"), 400, "invalid_job_id")
    assert_error(await http.get("/jobs/424242/runs"), 404, "job_not_found")
    assert_error(await http.get("/jobs/x1/runs"), 400, "invalid_job_id")


async def test_list_jobs_filters(http: httpx.AsyncClient) -> None:
    a = await enqueue(http, "a", queue="q1", service="svc1")
    b = await enqueue(http, "b", queue="q1")
    c = await enqueue(http, "a", queue="q2")
    await claim(http, ("b",))

    def ids(r: httpx.Response) -> list[str]:
        return [j["id"] for j in assert_ok(r)]

    assert ids(await http.get("/jobs")) == [c["id"], b["id"], a["id"]]
    assert ids(await http.get("/jobs", params={"kind": "a"})) == [c["id"], a["id"]]
    assert ids(await http.get("/jobs", params={"queue": "q1"})) == [b["id"], a["id"]]
    assert ids(await http.get("/jobs", params={"service": "svc1"})) == [a["id"]]
    assert ids(await http.get("/jobs", params={"status": "running"})) == [b["id"]]
    assert ids(await http.get("/jobs", params={"status": "pending", "queue": "q2"})) == [c["id"]]
    assert ids(await http.get("/jobs", params={"kind": "none"})) == []

    listed = assert_ok(await http.get("/jobs", params={"include": "current_run"}))
    runs = {j["id"]: j["current_run"] for j in listed}
    assert runs[a["id"]] is None and runs[c["id"]] is None
    assert runs[b["id"]]["status"] == "running" and runs[b["id"]]["job_id"] == b["id"]

    assert_error(await http.get("/jobs", params={"status": "sleeping"}), 400, "invalid_request")
    assert_error(await http.get("/jobs", params={"limit": 0}), 400, "invalid_limit")
    assert_error(await http.get("/jobs", params={"limit": 201}), 400, "invalid_limit")
    assert_error(await http.get("/jobs", params={"limit": "ten"}), 400, "invalid_request")
    assert_error(await http.get("/jobs", params={"cursor": "abc"}), 400, "invalid_cursor_id")
    assert_error(await http.get("/jobs", params={"kind": "a\x00"}), 400)


async def test_list_jobs_cursor_pagination(http: httpx.AsyncClient) -> None:
    made = [(await enqueue(http, params={"n": i}))["id"] for i in range(5)]
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = [j["id"] for j in assert_ok(await http.get("/jobs", params=params))]
        if not page:
            break
        pages.append(page)
        cursor = page[-1]
        assert len(pages) <= 4, pages
    assert pages == [made[4:2:-1], made[2:0:-1], made[0:1]]


async def test_runs_list_filters_pagination_and_get(http: httpx.AsyncClient) -> None:
    j1 = await enqueue(http, "a")
    j2 = await enqueue(http, "b")
    c1 = await claim(http, ("a",), worker="w1")
    assert_ok(
        await http.post(
            lease_path("job", c1, "fail"),
            json={"worker_id": "w1", "retryable": True, "backoff_seconds": 0},
        )
    )
    c2 = await claim(http, ("a",), worker="w2")
    c3 = await claim(http, ("b",), worker="w1")
    assert_ok(await http.post(lease_path("run", c3, "complete"), json={"worker_id": "w1"}))
    r1, r2, r3 = (c["run"]["id"] for c in (c1, c2, c3))

    def ids(r: httpx.Response) -> list[str]:
        return [x["id"] for x in assert_ok(r)]

    assert ids(await http.get("/runs")) == [r3, r2, r1]
    assert ids(await http.get("/runs", params={"status": "running"})) == [r2]
    assert ids(await http.get("/runs", params={"status": "failed"})) == [r1]
    assert ids(await http.get("/runs", params={"worker_id": "w1"})) == [r3, r1]
    assert ids(await http.get("/runs", params={"job_id": j1["id"]})) == [r2, r1]
    assert ids(await http.get("/runs", params={"kind": "b"})) == [r3]
    assert ids(await http.get("/runs", params={"job_id": j2["id"], "status": "running"})) == []
    assert ids(await http.get("/runs", params={"limit": 2})) == [r3, r2]
    assert ids(await http.get("/runs", params={"limit": 2, "cursor": r2})) == [r1]

    run = assert_ok(await http.get(f"/runs/{r2}"))
    assert (run["id"], run["job_id"], run["attempt"], run["worker_id"]) == (r2, j1["id"], 2, "w2")
    assert run["status"] == "running"
    assert_error(await http.get("/runs/424242"), 404, "run_not_found")
    assert_error(await http.get("/runs/abc"), 400, "invalid_run_id")
    assert_error(await http.get("/runs", params={"status": "weird"}), 400, "invalid_request")
    assert_error(await http.get("/runs", params={"job_id": "abc"}), 400, "invalid_job_id")
    assert_error(await http.get("/runs", params={"cursor": "-5"}), 400, "invalid_cursor_id")
    assert_error(await http.get("/runs", params={"limit": 500}), 400, "invalid_limit")


# ---------------------------------------------------------------------------------------------
# unknown routes, metrics, OpenAPI


async def test_unknown_route_and_wrong_method(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/nothing-here"), 404, "route_not_found")
    assert_error(await http.delete("/jobs"), 405, "method_not_allowed")
    assert_error(await http.get("/jobs/1/complete"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/metrics", "/foreman/metrics"])
async def test_metrics_after_some_traffic(http: httpx.AsyncClient, path: str) -> None:
    url = httpx.URL("http://testserver" + path)
    text = ""

    async def exported(*series: str) -> bool:
        nonlocal text
        r = await http.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        return all(s in text for s in series)

    await wait_until(lambda: exported("foreman_listener_connected 1.0"), what="the listener")
    for i in range(3):
        await enqueue(http, "m", params={"i": i})
    claimed = await claim(http, ("m",))
    await wait_until(
        lambda: exported(
            'foreman_jobs_enqueued_total{kind="m",queue="default"} 3.0',
            'foreman_jobs_claimed_total{kind="m",queue="default"} 1.0',
            'foreman_claim_wait_seconds_count{kind="m"} 1.0',
        ),
        what=f"the enqueue and claim counters on {path}",
    )
    assert_ok(await http.post(lease_path("job", claimed, "complete"), json={"worker_id": "w1"}))
    await wait_until(
        lambda: exported(
            'foreman_jobs_terminal_total{kind="m",queue="default",status="succeeded"} 1.0',
            'foreman_run_duration_seconds_count{kind="m",status="succeeded"} 1.0',
            'foreman_jobs_count{status="succeeded"} 1.0',  # SQL gauges: cached about 1 s
        ),
        what=f"the completion on {path}",
    )
    assert 'foreman_jobs_count{status="pending"} 2.0' in text
    assert 'foreman_runs_count{status="succeeded"} 1.0' in text
    assert "foreman_listener_connected 1.0" in text
    assert 'foreman_oldest_pending_age_seconds{queue="default"}' in text


async def test_openapi_lists_every_route(http: httpx.AsyncClient) -> None:
    spec = assert_ok(await http.get("/openapi.json"))
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = {
        "/foreman/ping": {"get"},
        "/foreman/jobs": {"get", "post"},
        "/foreman/jobs/{job_id}": {"get"},
        "/foreman/jobs/{job_id}/runs": {"get"},
        "/foreman/jobs/{job_id}/cancel": {"post"},
        "/foreman/jobs/{job_id}/heartbeat": {"post"},
        "/foreman/jobs/{job_id}/complete": {"post"},
        "/foreman/jobs/{job_id}/fail": {"post"},
        "/foreman/claim": {"post"},
        "/foreman/jobs/claim": {"post"},
        "/foreman/runs": {"get"},
        "/foreman/runs/{run_id}": {"get"},
        "/foreman/runs/{run_id}/heartbeat": {"post"},
        "/foreman/runs/{run_id}/complete": {"post"},
        "/foreman/runs/{run_id}/fail": {"post"},
        "/foreman/events": {"get"},
        "/foreman/events/{job_id}": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, f"{path} missing from OpenAPI"
        assert methods <= set(paths[path]), (path, set(paths[path]))
    schemas = spec["components"]["schemas"]
    assert {"EnqueueBody", "ClaimBody", "HeartbeatBody", "CompleteBody", "FailBody"} <= set(schemas)
    assert "kind" in schemas["EnqueueBody"]["required"]
