"""SyncClient from plain synchronous code (no event loop in the calling thread)."""

from __future__ import annotations

import pytest

from foreman_rt import ConfigurationError, JobStatus, NotFound, SyncClient

pytestmark = pytest.mark.db


def test_sync_client_enqueues_reads_lists_and_cancels(pg_dsn: str, schema: str) -> None:
    with SyncClient(pg_dsn, schema) as client:
        res = client.enqueue("k", {"n": 1}, idempotency_key="sync")
        assert res.created
        assert client.enqueue("k", {"n": 2}, idempotency_key="sync").created is False
        bulk = client.enqueue_many([{"kind": "k"}, {"kind": "k"}])
        assert len(bulk) == 2

        job = client.get(res.job.id)
        assert job.params == {"n": 1}
        page = client.list(kind="k", limit=10)
        assert [j.id for j in page.jobs] == [bulk[1].id, bulk[0].id, job.id]
        assert client.runs(job.id) == []

        cancelled = client.cancel(job.id)
        assert cancelled.status is JobStatus.CANCELLED
        assert client.wait(job.id, timeout=5).status is JobStatus.CANCELLED
        with pytest.raises(NotFound):
            client.get(987_654)


def test_sync_client_close_stops_its_thread(pg_dsn: str, schema: str) -> None:
    client = SyncClient(pg_dsn, schema)
    thread = client._thread
    client.enqueue("k")
    client.close()
    assert not thread.is_alive()


def test_sync_client_on_unmigrated_schema_raises_schema_not_migrated(pg_dsn: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SyncClient(pg_dsn, "never_migrated_here")
    assert info.value.code == "schema_not_migrated"
