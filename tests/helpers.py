"""Helpers for database tests: a LISTEN connection that records payloads, and the worker-side
queries (claim, complete, fail) run by hand so tests can move jobs through their states."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from foreman_rt import db
from foreman_rt.arrays import id_array, json_array
from foreman_rt.sql import query

WAIT = 5.0  # upper bound for anything a test waits on; the happy path takes milliseconds


class Notifications:
    """Payloads received on one channel, in order; `next()` waits for the following one."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.arrived = asyncio.Event()
        self._read = 0

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.payloads.append(str(payload))
        self.arrived.set()

    async def next(self, timeout: float = WAIT) -> str:
        """The next payload not yet returned; TimeoutError if none arrives in time."""
        async with asyncio.timeout(timeout):
            while self._read >= len(self.payloads):
                self.arrived.clear()
                await self.arrived.wait()
        self._read += 1
        return self.payloads[self._read - 1]

    @property
    def unread(self) -> list[str]:
        return self.payloads[self._read :]


@asynccontextmanager
async def listening(dsn: str, schema: str, channel: str) -> AsyncIterator[Notifications]:
    """LISTEN on `channel` from a connection of its own; on the wake and events channels it also
    holds a demand row, since inserts and state changes notify only while someone waits."""
    conn = await db.connect(dsn, schema, application_name="foreman-rt test listener")
    seen = Notifications()
    await conn.add_listener(channel, seen.on_notify)
    wake = channel == f"{schema}_wake"
    events = channel == f"{schema}_events"
    if wake or events:
        queues = None if wake else []
        await conn.execute(query("demand_arm"), "test-listener", queues, 600.0, False, events)
    try:
        yield seen
    finally:
        if wake or events:
            await conn.execute(query("demand_disarm"), "test-listener")
        await conn.close()


async def claim(conn: asyncpg.Connection, kind: str = "kind", worker: str = "w1") -> list[Any]:
    """Claim up to 10 ready jobs of `kind` as a worker would (claim.sql)."""
    return await conn.fetch(query("claim"), None, [kind], 10, worker, 30.0)


async def complete(conn: asyncpg.Connection, run_id: int, result: str = '{"ok":true}') -> None:
    """Finish one run as succeeded (complete_batch.sql)."""
    done = await conn.fetch(
        query("complete_batch"), id_array([run_id]), json_array([result]), None, None, None
    )
    assert [r["run_id"] for r in done] == [run_id]


async def fail(conn: asyncpg.Connection, run_id: int, error: str = "boom") -> None:
    """End one run as failed without retry (fail_batch.sql)."""
    done = await conn.fetch(query("fail_batch"), id_array([run_id]), ["failed"], [error], [None])
    assert [r["status"] for r in done] == ["failed"]


async def count_jobs(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM jobs"))
