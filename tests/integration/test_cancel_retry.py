"""cancel (pending, running, terminal) and retry (failed, cancelled, other states)."""

from __future__ import annotations

import pytest
from helpers import claim, complete, fail, listening

from foreman_rt import Client, InvalidInput, JobStatus, NotFound, db

pytestmark = pytest.mark.db


async def test_cancel_pending_job_is_cancelled_at_once(client: Client) -> None:
    job = (await client.enqueue("k")).job
    cancelled = await client.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.completed_at is not None
    assert await client.get(job.id) == cancelled


async def test_cancel_terminal_job_leaves_it_unchanged(client: Client, conn: db.Connection) -> None:
    job = (await client.enqueue("kind")).job
    [row] = await claim(conn)
    await complete(conn, row["run_id"])
    done = await client.get(job.id)
    assert await client.cancel(job.id) == done
    again = await client.cancel(job.id)
    assert again.status is JobStatus.SUCCEEDED
    assert again.cancel_requested is False
    assert again.updated_at == done.updated_at


async def test_cancel_cancelled_job_is_unchanged(client: Client) -> None:
    job = (await client.enqueue("k")).job
    first = await client.cancel(job.id)
    assert await client.cancel(job.id) == first


async def test_cancel_running_job_requests_cancel_and_notifies(
    pg_dsn: str, schema: str, client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("kind")).job
    [row] = await claim(conn)
    assert row["id"] == job.id
    async with listening(pg_dsn, schema, f"{schema}_cancel") as cancels:
        result = await client.cancel(job.id)
        assert await cancels.next() == str(job.id)
    assert result.status is JobStatus.RUNNING
    assert result.cancel_requested is True
    assert result.completed_at is None


async def test_cancel_unknown_job_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        await client.cancel(31_337)
    assert info.value.code == "job_not_found"


async def test_retry_failed_job_puts_it_back_to_pending(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("kind", max_attempts=1)).job
    [row] = await claim(conn)
    await fail(conn, row["run_id"])
    failed = await client.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error == "boom"
    retried = await client.retry(job.id)
    assert retried.status is JobStatus.PENDING
    assert retried.completed_at is None
    assert retried.error is None
    assert retried.max_attempts == 2  # one more attempt than were used
    assert retried.attempt_count == 1


async def test_retry_cancelled_job_puts_it_back_to_pending(client: Client) -> None:
    job = (await client.enqueue("k")).job
    await client.cancel(job.id)
    retried = await client.retry(str(job.id))
    assert retried.status is JobStatus.PENDING
    assert retried.cancel_requested is False
    assert retried.completed_at is None


@pytest.mark.parametrize("state", ["pending", "running", "succeeded"])
async def test_retry_of_job_that_is_not_failed_or_cancelled_raises_invalid_state(
    client: Client, conn: db.Connection, state: str
) -> None:
    job = (await client.enqueue("kind")).job
    if state != "pending":
        [row] = await claim(conn)
        if state == "succeeded":
            await complete(conn, row["run_id"])
    with pytest.raises(InvalidInput) as info:
        await client.retry(job.id)
    assert info.value.code == "invalid_state"
    assert (await client.get(job.id)).status == state


async def test_retry_unknown_job_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        await client.retry(77_777)
