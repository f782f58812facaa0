"""Client.wait: woken by the job's state-change notification, or Timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import claim, complete

from foreman_rt import Client, Job, JobStatus, NotFound, Timeout, db

pytestmark = pytest.mark.db


async def test_wait_is_woken_when_another_connection_completes_the_job(
    client: Client, conn: db.Connection
) -> None:
    job = (await client.enqueue("kind")).job
    [row] = await claim(conn)

    # Know when the waiter has seen the job still running: from then on only a notification
    # (or the 5 s safety recheck) can wake it.
    saw_running = asyncio.Event()
    real_get = client.get

    async def spying_get(job_id: Any, **kwargs: Any) -> Job:
        found = await real_get(job_id, **kwargs)
        if found.status is JobStatus.RUNNING:
            saw_running.set()
        return found

    client.get = spying_get  # type: ignore[method-assign]
    waiter = asyncio.create_task(client.wait(job.id, timeout=10))
    await asyncio.wait_for(saw_running.wait(), 5)

    started = time.monotonic()
    await complete(conn, row["run_id"])
    done = await asyncio.wait_for(waiter, 5)
    elapsed = time.monotonic() - started

    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"ok": True}
    assert elapsed < 2.0, f"wait took {elapsed:.2f} s: woken by the recheck, not a notification"


async def test_wait_on_terminal_job_returns_at_once(client: Client) -> None:
    job = (await client.enqueue("k")).job
    await client.cancel(job.id)
    assert (await client.wait(job.id, timeout=5)).status is JobStatus.CANCELLED


async def test_wait_with_timeout_on_pending_job_raises_timeout(client: Client) -> None:
    job = (await client.enqueue("k")).job
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        await client.wait(job.id, timeout=0.3)
    assert info.value.code == "wait_timeout"
    assert time.monotonic() - started < 3
    assert (await client.get(job.id)).status is JobStatus.PENDING


async def test_wait_on_unknown_job_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        await client.wait(123_456, timeout=2)
