"""Helpers for in-process Worker tests: `wait_until` polls a condition (usually a SQL query)
until a deadline; SQL invariants; a log watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import foreman_rt
from foreman_rt import db

DEADLINE = 10.0  # upper bound for anything a test waits on


async def wait_until(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = DEADLINE, every: float = 0.01
) -> Any:
    """Await `check()` every `every` seconds until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(every)


async def job_status(conn: db.Connection, job_id: int) -> str:
    return str(await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job_id))


async def runs_of(conn: db.Connection, job_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM job_runs WHERE job_id = $1 ORDER BY attempt", job_id)
    return [dict(r) for r in rows]


async def wait_status(
    conn: db.Connection, job_id: int, status: str, timeout: float = DEADLINE
) -> None:
    async def check() -> bool:
        return await job_status(conn, job_id) == status

    await wait_until(check, f"job {job_id} to be {status}", timeout)


async def assert_invariants(conn: db.Connection) -> None:
    """What must hold in every schema at rest: no running run without a running job, at most
    one succeeded run per job, terminal jobs have no running run, attempts match run rows."""
    bad = await conn.fetch(
        """
        SELECT j.id, j.status, j.attempt_count,
               count(r.id) AS runs,
               count(r.id) FILTER (WHERE r.status = 'running') AS running,
               count(r.id) FILTER (WHERE r.status = 'succeeded') AS succeeded
        FROM jobs AS j LEFT JOIN job_runs AS r ON r.job_id = j.id
        GROUP BY j.id
        HAVING count(r.id) <> j.attempt_count
            OR count(r.id) FILTER (WHERE r.status = 'succeeded') > 1
            OR (j.status = 'running') <> (count(r.id) FILTER (WHERE r.status = 'running') = 1)
            OR (j.status = 'succeeded') <> (count(r.id) FILTER (WHERE r.status = 'succeeded') = 1)
        """
    )
    assert [dict(r) for r in bad] == []


class LogWatcher(logging.Handler):
    """Sets an event when a log message containing `needle` is emitted."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.seen = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self._loop.call_soon_threadsafe(self.seen.set)


@contextlib.contextmanager
def watch_log(name: str, needle: str) -> Iterator[LogWatcher]:
    logger = logging.getLogger(name)
    watcher = LogWatcher(needle)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(watcher)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(old_level)


WorkerFactory = Callable[..., foreman_rt.Worker]
