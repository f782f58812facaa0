"""The client's lane of connections: bounded, reused after a server error, never reused after a
statement that did not end with the server's answer (cancelled, terminated), replaced on
expire, closed with the client; and the client's calls recover from terminated sessions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from foreman_rt import Client, db
from foreman_rt.errors import DatabaseUnavailable
from foreman_rt.lane import Lane

pytestmark = pytest.mark.db


@pytest.fixture
async def admin(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _lane(pg_dsn: str, schema: str, size: int) -> tuple[Lane, str]:
    name = f"lane-{uuid.uuid4().hex[:8]}"
    return Lane(lambda: db.connect(pg_dsn, schema, application_name=name), size), name


async def _sessions(admin: asyncpg.Connection, name: str) -> int:
    n: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
    )
    return n


async def _settle(done: Callable[[], Awaitable[bool]]) -> None:
    """Wait up to 5 s for `done()` (the closes run in the background); the caller asserts."""
    for _ in range(100):
        if await done():
            return
        await asyncio.sleep(0.05)


async def _pid(lane: Lane) -> int:
    rows = await lane.fetch("SELECT pg_backend_pid() AS pid")
    return int(rows[0]["pid"])


async def test_never_more_sessions_than_its_size(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    lane, name = _lane(pg_dsn, schema, 3)
    seen: list[int] = []

    async def call() -> None:
        await lane.fetch("SELECT pg_sleep(0.05)")

    async def watch() -> None:
        for _ in range(20):
            seen.append(await _sessions(admin, name))
            await asyncio.sleep(0.01)

    try:
        await asyncio.gather(watch(), *(call() for _ in range(20)))
        assert max(seen) == 3
        assert lane.open_connections == 3
    finally:
        await lane.close()
    assert lane.open_connections == 0


async def test_a_server_error_keeps_the_session(pg_dsn: str, schema: str) -> None:
    lane, _ = _lane(pg_dsn, schema, 1)
    try:
        before = await _pid(lane)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await lane.fetch("SELECT 1 / 0")
        assert await _pid(lane) == before
    finally:
        await lane.close()


async def test_a_cancelled_statement_ends_on_the_server_and_its_session_closes(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    """The cancel request reaches the server (the 30 s sleep does not run on), the session is
    closed rather than reused, and its place in the count frees once it is gone."""
    lane, name = _lane(pg_dsn, schema, 1)
    try:
        before = await _pid(lane)
        call = asyncio.create_task(lane.fetch("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        async def alive() -> bool:
            found: bool = await admin.fetchval(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", before
            )
            return found

        async def gone() -> bool:
            return not await alive() and lane.open_connections == 0

        await _settle(gone)
        assert not await alive(), "the cancelled statement still runs"
        assert lane.open_connections == 0
        assert await _pid(lane) != before
        assert await _sessions(admin, name) == 1
    finally:
        await lane.close()


async def test_a_terminated_session_is_replaced(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    lane, _ = _lane(pg_dsn, schema, 1)
    try:
        before = await _pid(lane)
        await admin.execute("SELECT pg_terminate_backend($1)", before)
        await asyncio.sleep(0.1)
        try:  # a session seen closed is replaced at once; one not yet seen fails its call
            await lane.fetch("SELECT 1")
        except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
            assert lane.open_connections == 0
        assert await _pid(lane) != before
        assert lane.open_connections == 1
    finally:
        await lane.close()


async def test_a_waiter_cancelled_in_line_leaks_nothing(pg_dsn: str, schema: str) -> None:
    lane, _ = _lane(pg_dsn, schema, 1)
    try:
        busy = asyncio.create_task(lane.fetch("SELECT pg_sleep(0.3)"))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(lane.fetch("SELECT 1"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await busy
        assert await lane.fetch("SELECT 2 AS n") == [(2,)]
        assert lane.open_connections == 1
    finally:
        await lane.close()


async def test_expire_replaces_idle_and_busy_sessions(pg_dsn: str, schema: str) -> None:
    lane, _ = _lane(pg_dsn, schema, 2)
    try:
        idle = await _pid(lane)
        busy = asyncio.create_task(lane.fetch("SELECT pg_backend_pid() AS pid, pg_sleep(0.2)"))
        await asyncio.sleep(0.05)
        await lane.expire_connections()
        busy_pid = (await busy)[0]["pid"]
        pids = set(await asyncio.gather(_pid(lane), _pid(lane)))
        assert not pids & {idle, busy_pid}
    finally:
        await lane.close()


async def test_a_closed_lane_refuses_calls_and_ends_busy_sessions(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    lane, name = _lane(pg_dsn, schema, 2)
    busy = asyncio.create_task(lane.fetch("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    await lane.close()
    with pytest.raises(asyncpg.InterfaceError):
        await lane.fetch("SELECT 1")
    await busy  # given back after the close: closed in the background

    async def ended() -> bool:
        return lane.open_connections == 0 and await _sessions(admin, name) == 0

    await _settle(ended)
    assert lane.open_connections == 0
    assert await _sessions(admin, name) == 0


async def test_the_client_recovers_after_its_sessions_are_terminated(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    """One call may meet a dead session (a lost connection: DatabaseUnavailable, as with any
    pool); the next one runs on a new session, and nothing was written twice."""
    sessions = "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name = 'foreman-rt'"
    others = await admin.fetchval(sessions) or []
    client = await Client.connect(pg_dsn, schema, max_size=4)
    try:
        await asyncio.gather(*(client.enqueue("k", {"n": i}) for i in range(8)))
        mine = set(await admin.fetchval(sessions)) - set(others)
        assert len(mine) >= 2  # the pool's and the lane's
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(mine)
        )
        await asyncio.sleep(0.1)
        failed = 0
        for i in range(8, 16):
            try:
                await client.enqueue("k", {"n": i})
            except DatabaseUnavailable:
                failed += 1
        assert failed <= 4  # at most one per terminated session
        done = await client.enqueue("k", {"n": 99})
        assert done.created
        page = await client.list(kind="k", limit=100)
        assert len(page.jobs) == 8 + (8 - failed) + 1
    finally:
        await client.close()
