"""A synchronous client for code without an event loop (Django, Flask, scripts): the async
client runs on a private event loop in a background thread."""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from foreman_rt.client import Client, Enqueued, Page
from foreman_rt.config import DEFAULT_SCHEMA
from foreman_rt.jobs import EnqueueResult, Job, JobSpec, Run

T = TypeVar("T")


class SyncClient:
    """Blocking counterpart of `Client`; thread-safe; close it (or use `with`) when done."""

    def __init__(self, dsn: str | None = None, schema: str = DEFAULT_SCHEMA) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="foreman-rt-sync", daemon=True
        )
        self._thread.start()
        try:
            self._client = self._call(Client.connect(dsn, schema))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def enqueue(self, kind: str, params: Any = None, **options: Any) -> EnqueueResult:
        """Enqueue one job (same options as `Client.enqueue`, without `connection`)."""
        return self._call(self._client.enqueue(kind, params, **options))

    def enqueue_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[Enqueued]:
        """Enqueue many jobs in one statement."""
        return self._call(self._client.enqueue_many(list(jobs)))

    def get(self, job_id: int | str) -> Job:
        """One job by id."""
        return self._call(self._client.get(job_id))

    def list(self, **filters: Any) -> Page:
        """Jobs newest first (same filters as `Client.list`)."""
        return self._call(self._client.list(**filters))

    def runs(self, job_id: int | str) -> builtins.list[Run]:
        """Every attempt of a job."""
        return self._call(self._client.runs(job_id))

    def cancel(self, job_id: int | str) -> Job:
        """Cancel a job (pending at once, running cooperatively)."""
        return self._call(self._client.cancel(job_id))

    def wait(self, job_id: int | str, timeout: float | None = None) -> Job:
        """Block until the job is terminal."""
        return self._call(self._client.wait(job_id, timeout))

    def close(self) -> None:
        """Close the connections and stop the background loop."""
        try:
            self._call(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
