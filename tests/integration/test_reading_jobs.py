"""get, list (filters and keyset pagination) and runs."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import claim

from foreman_rt import Client, InvalidInput, JobStatus, NotFound, db

pytestmark = pytest.mark.db


async def test_get_returns_the_job_by_int_or_string_id(client: Client) -> None:
    job = (await client.enqueue("k", {"x": 1})).job
    assert await client.get(job.id) == job
    assert await client.get(str(job.id)) == job


async def test_get_unknown_id_raises_job_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        await client.get(999_999)
    assert info.value.code == "job_not_found"
    assert info.value.status == 404


async def test_get_other_tenants_job_raises_not_found(client: Client) -> None:
    job = (await client.enqueue("k", tenant="acme")).job
    assert (await client.get(job.id, tenant="acme")).id == job.id
    with pytest.raises(NotFound):
        await client.get(job.id, tenant="other")


async def test_get_malformed_id_raises_invalid_input(client: Client) -> None:
    with pytest.raises(InvalidInput) as info:
        await client.get("12abc")
    assert info.value.code == "invalid_job_id"


async def test_list_filters_by_status_kind_queue_and_tenant(
    client: Client, conn: db.Connection
) -> None:
    a = (await client.enqueue("kind", queue="q1")).job
    b = (await client.enqueue("other", queue="q2", tenant="acme")).job
    c = (await client.enqueue("kind", queue="q2", tenant="acme")).job
    await claim(conn, "kind")  # a and c become running

    async def ids(**filters: Any) -> list[int]:
        return [j.id for j in (await client.list(**filters)).jobs]

    assert await ids() == [c.id, b.id, a.id]
    assert await ids(status="running") == [c.id, a.id]
    assert await ids(status=JobStatus.PENDING) == [b.id]
    assert await ids(kind="other") == [b.id]
    assert await ids(queue="q2") == [c.id, b.id]
    assert await ids(tenant="acme") == [c.id, b.id]
    assert await ids(tenant="acme", kind="kind", queue="q2", status="running") == [c.id]
    assert await ids(kind="missing") == []


async def test_list_rejects_unknown_status_and_bad_limit(client: Client) -> None:
    with pytest.raises(InvalidInput) as info:
        await client.list(status="done")
    assert info.value.code == "invalid_status"
    for limit in (0, 1001):
        with pytest.raises(InvalidInput) as info:
            await client.list(limit=limit)
        assert info.value.code == "invalid_limit"


async def test_list_pages_through_120_jobs_in_pages_of_50(client: Client) -> None:
    made = await client.enqueue_many([{"kind": "k", "params": {"i": i}} for i in range(120)])
    pages = []
    cursor = None
    while True:
        page = await client.list(limit=50, cursor=cursor)
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        assert len(pages) < 5, "pagination does not end"
    assert [len(p.jobs) for p in pages] == [50, 50, 20]
    seen = [j.id for p in pages for j in p.jobs]
    assert len(set(seen)) == 120
    assert seen == sorted((e.id for e in made), reverse=True)
    assert pages[0].next_cursor == str(pages[0].jobs[-1].id)
    assert pages[-1].next_cursor is None


async def test_runs_of_a_fresh_job_is_empty(client: Client) -> None:
    job = (await client.enqueue("k")).job
    assert await client.runs(job.id) == []


async def test_runs_lists_each_claimed_attempt(client: Client, conn: db.Connection) -> None:
    job = (await client.enqueue("kind")).job
    [claimed] = await claim(conn, "kind", worker="w7")
    [run] = await client.runs(job.id)
    assert (run.id, run.job_id, run.attempt, run.worker_id) == (claimed["run_id"], job.id, 1, "w7")
    assert run.status == "running"
    assert run.lease_expires_at is not None


async def test_runs_of_unknown_job_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        await client.runs(424_242)
    assert info.value.code == "job_not_found"
