"""Fixtures for in-process Worker tests: a worker factory that always stops its workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from worker_support import WorkerFactory

import foreman_rt


@pytest.fixture
async def make_worker(pg_dsn: str, schema: str) -> AsyncIterator[WorkerFactory]:
    """Build workers on the test's schema with test-friendly defaults; any worker still running
    at teardown is stopped at once (two stop() calls)."""
    made: list[foreman_rt.Worker] = []

    def make(handlers: dict[str, Any], **options: Any) -> foreman_rt.Worker:
        options.setdefault("shutdown_timeout", 1.0)
        options.setdefault("poll_interval", 0.5)
        w = foreman_rt.Worker(pg_dsn, handlers, schema=schema, **options)
        made.append(w)
        return w

    yield make
    for w in made:
        task = w._run_task
        if task is not None and not task.done():
            w.stop()
            w.stop()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10.0)
