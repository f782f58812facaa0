"""Server-Sent Events through a real `foreman-rt api` process (keepalive 0.3 s): the job stream,
Last-Event-ID resume, keepalives, 404 before the stream, the tenant stream's queue filter, and
the latency from a state change made through the API to the event reaching a client."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest
from api_support import (
    KEEPALIVE,
    REPORT,
    ApiServer,
    SseItem,
    assert_error,
    assert_ok,
    open_sse,
    percentile,
)

pytestmark = [pytest.mark.db, pytest.mark.e2e]


async def enqueue(http: httpx.AsyncClient, kind: str = "k", **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = assert_ok(await http.post("/jobs", json={"kind": kind, **fields}), 201)
    return job


async def claim(
    http: httpx.AsyncClient, kind: str = "k", worker: str = "w1", **fields: Any
) -> dict[str, Any]:
    body = {"kinds": [kind], "worker_id": worker, **fields}
    claimed: dict[str, Any] = assert_ok(await http.post("/jobs/claim", json=body))
    return claimed


def versions(items: list[SseItem]) -> list[int]:
    return [int(i.id) for i in items if i.is_event and i.id is not None]


async def test_job_stream_sends_the_state_at_once_then_each_change_then_closes(
    api: ApiServer,
) -> None:
    async with api.client() as http:
        job = await enqueue(http)
        started = time.perf_counter()
        async with open_sse(http, f"/events/{job['id']}") as stream:
            first = await stream.next_event(timeout=2)
            assert first.at - started < 1.0  # at once, not after a keepalive or a change
            assert first.event == "job" and first.id is not None and first.id.isdigit()
            assert first.data["id"] == job["id"] and first.data["status"] == "pending"
            assert first.data["current_run"] is None

            claimed = await claim(http)
            running = await stream.next_event()
            assert running.data["status"] == "running"
            assert running.data["current_run"]["id"] == claimed["run"]["id"]

            hb = {"worker_id": "w1", "progress_current": 5, "progress_total": 10}
            assert_ok(
                await http.post(
                    f"/jobs/{job['id']}/heartbeat", json=hb | {"progress_message": "half"}
                )
            )
            progress = await stream.next_event()
            assert progress.data["status"] == "running"
            run = progress.data["current_run"]
            assert (run["progress_current"], run["progress_total"]) == (5, 10)
            assert run["progress_message"] == "half"

            # A heartbeat that changes no progress is not an event.
            assert_ok(await http.post(f"/jobs/{job['id']}/heartbeat", json=hb))
            body = {"worker_id": "w1", "result": {"ok": True}}
            assert_ok(await http.post(f"/jobs/{job['id']}/complete", json=body))
            done = await stream.next_event()
            assert done.data["status"] == "succeeded" and done.data["result"] == {"ok": True}
            assert done.data["current_run"] is None

            rest = await stream.until_closed()
            assert [i for i in rest if i.is_event] == [], "events after the terminal state"
        seen = [first, running, progress, done]
        assert versions(seen) == sorted(set(versions(seen))), "ids must strictly increase"


async def test_stream_of_a_terminal_job_sends_one_event_and_closes(api: ApiServer) -> None:
    async with api.client() as http:
        job = await enqueue(http)
        assert_ok(await http.post(f"/jobs/{job['id']}/cancel"))
        async with open_sse(http, f"/events/{job['id']}") as stream:
            items = await stream.until_closed()
        events = [i for i in items if i.is_event]
        assert [e.data["status"] for e in events] == ["cancelled"]


async def test_cancel_request_on_a_running_job_is_streamed(api: ApiServer) -> None:
    async with api.client() as http:
        job = await enqueue(http)
        await claim(http, worker="w1")
        async with open_sse(http, f"/events/{job['id']}") as stream:
            first = await stream.next_event()
            assert (first.data["status"], first.data["cancel_requested"]) == ("running", False)
            assert_ok(await http.post(f"/jobs/{job['id']}/cancel"))
            asked = await stream.next_event(timeout=3)
            assert (asked.data["status"], asked.data["cancel_requested"]) == ("running", True)


async def test_reconnect_with_last_event_id_gets_no_duplicate(api: ApiServer) -> None:
    async with api.client() as http:
        job = await enqueue(http)
        await claim(http)
        path = f"/events/{job['id']}"
        async with open_sse(http, path) as stream:
            running = await stream.next_event()
        assert running.data["status"] == "running" and running.id is not None

        # Same version: nothing is sent again, only keepalives, until something changes.
        async with open_sse(http, path, {"Last-Event-ID": running.id}) as stream:
            quiet = await stream.collect(3 * KEEPALIVE)
            assert [i for i in quiet if i.is_event] == []
            assert any(i.comment == "keepalive" for i in quiet), quiet
            hb = {"worker_id": "w1", "progress_current": 1, "progress_total": 2}
            assert_ok(await http.post(f"/jobs/{job['id']}/heartbeat", json=hb))
            progress = await stream.next_event()
            assert progress.id is not None and int(progress.id) > int(running.id)
            assert progress.data["current_run"]["progress_current"] == 1

        # An older version gets the current state at once.
        async with open_sse(http, path, {"Last-Event-ID": str(int(running.id) - 1)}) as stream:
            current = await stream.next_event(timeout=2)
            assert current.id == progress.id
            assert current.data["current_run"]["progress_current"] == 1

        async with open_sse(http, path, {"Last-Event-ID": progress.id}) as stream:
            assert_ok(await http.post(f"/jobs/{job['id']}/complete", json={"worker_id": "w1"}))
            items = await stream.until_closed()
        events = [i for i in items if i.is_event]
        assert [e.data["status"] for e in events] == ["succeeded"]
        final = events[0]

        # Resuming after the terminal event: no duplicate, the stream just closes.
        async with open_sse(http, path, {"Last-Event-ID": final.id or ""}) as stream:
            items = await stream.until_closed()
        assert [i for i in items if i.is_event] == []

        # An unreadable Last-Event-ID is ignored: the current state is sent.
        async with open_sse(http, path, {"Last-Event-ID": "not-a-number"}) as stream:
            items = await stream.until_closed()
        assert [i.id for i in items if i.is_event] == [final.id]


async def test_keepalive_comments_on_a_quiet_job(api: ApiServer) -> None:
    async with api.client() as http:
        job = await enqueue(http)
        async with open_sse(http, f"/events/{job['id']}") as stream:
            await stream.next_event()
            quiet = await stream.collect(4 * KEEPALIVE + 0.1)
        assert [i for i in quiet if i.is_event] == []
        keepalives = [i for i in quiet if i.comment == "keepalive"]
        assert len(keepalives) >= 3, quiet
        gaps = [b.at - a.at for a, b in itertools.pairwise(keepalives)]
        assert all(g < 3 * KEEPALIVE for g in gaps), gaps


async def test_unknown_job_is_404_json_before_the_stream(api: ApiServer) -> None:
    async with api.client() as http:
        r = await http.get("/events/424242")
        assert_error(r, 404, "job_not_found")
        r = await http.get("/events/abc")
        assert_error(r, 400, "invalid_job_id")


async def test_tenant_stream_shows_only_that_queues_jobs(api: ApiServer) -> None:
    async with (
        api.client() as http,
        open_sse(http, "/events") as everything,
        open_sse(http, "/events?queue=q") as only_q,
    ):
        for stream in (everything, only_q):
            opened = await stream.next()
            assert opened is not None and opened.comment == "stream open"
        ours = await enqueue(http, "k", queue="q")
        theirs = await enqueue(http, "k", queue="other")
        await claim(http, worker="w-other", queues=["other"])
        await claim(http, worker="w-q", queues=["q"])
        assert_ok(await http.post(f"/jobs/{theirs['id']}/complete", json={"worker_id": "w-other"}))
        assert_ok(await http.post(f"/jobs/{ours['id']}/complete", json={"worker_id": "w-q"}))
        # The unfiltered stream sees both jobs; once it has both terminal states, every change
        # has gone out to every stream.
        seen: list[tuple[str, str, str]] = []
        while not {(ours["id"], "succeeded"), (theirs["id"], "succeeded")} <= {
            (i, s) for i, _q, s in seen
        }:
            e = await everything.next_event()
            seen.append((e.data["id"], e.data["queue"], e.data["status"]))
        assert {i for i, _q, _s in seen} == {ours["id"], theirs["id"]}
        filtered = [i for i in await only_q.collect(3 * KEEPALIVE) if i.is_event]
    # Only queue q's job; its states in order, each once, never going back.
    assert {(e.data["id"], e.data["queue"]) for e in filtered} == {(ours["id"], "q")}
    statuses = [e.data["status"] for e in filtered]
    order = ["pending", "running", "succeeded"]  # creation shows too
    assert statuses[-1] == "succeeded" and set(statuses) <= set(order), statuses
    assert statuses == sorted(statuses, key=order.index), statuses
    assert all(e.id is not None and e.id.isdigit() for e in filtered)


async def test_state_change_to_event_latency(api: ApiServer, record_property: Any) -> None:
    samples: list[float] = []
    async with api.client() as http:
        jobs = [await enqueue(http, params={"n": i}) for i in range(50)]
        for job in jobs:
            await claim(http)
            async with open_sse(http, f"/events/{job['id']}") as stream:
                assert (await stream.next_event()).data["status"] == "running"
                before = time.perf_counter()
                r = await http.post(f"/jobs/{job['id']}/complete", json={"worker_id": "w1"})
                assert_ok(r)
                event = await stream.next_event()
                assert event.data["status"] == "succeeded"
                samples.append((event.at - before) * 1000)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    line = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(samples):.1f} ms over {len(samples)}"
    print(f"SSE state change (POST complete) -> event received: {line}")
    record_property("sse_latency_p50_ms", round(p50, 2))
    record_property("sse_latency_p99_ms", round(p99, 2))
    REPORT["SSE complete->event latency"] = line
