"""The client's own connections for its single statements: taken and given back without a pool's
bookkeeping (no proxy object, no session reset, no task per release), at most `size` open, opened
on demand and closed after a while unused. A connection whose statement did not end with the
server's answer is never reused: a lost one is dropped at once; one whose call was cancelled is
closed in the background once its cancel request reached the server (so the statement does not
run on), and keeps its place in the count until then."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from foreman_rt import db
from foreman_rt.dberrors import connection_lost

IDLE_SECONDS = 300.0  # an idle connection is closed after this long unused
CLOSE_SECONDS = 5.0  # a graceful close (cancel request, then Terminate) gets this long


class Lane:
    """Up to `size` connections that run one statement at a time for the client."""

    def __init__(self, connect: Callable[[], Awaitable[db.Connection]], size: int) -> None:
        if size < 1:
            raise ValueError("a lane needs at least one connection")
        self._connect = connect
        self._size = size
        self._idle: list[tuple[db.Connection, float]] = []  # newest last
        self._open = 0  # open, or being opened
        self._waiters: deque[asyncio.Future[db.Connection | None]] = deque()
        self._generation = 0
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._members: dict[db.Connection, int] = {}  # connection -> generation it belongs to
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        """Connections open or being opened."""
        return self._open

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement on a connection of the lane; its rows."""
        conn = self._idle_connection() or await self._take()
        try:
            rows = await conn.fetch(sql, *args)
        except asyncpg.PostgresError as exc:
            if connection_lost(exc):  # shutdown, terminated, connection failure
                self._drop(conn)
            else:  # the server answered with an error and is ready for the next statement
                self._give(conn)
            raise
        except BaseException:
            self._drop(conn)  # cancelled mid-statement, or lost: its state is unknown
            raise
        self._give(conn)
        return rows

    async def expire_connections(self) -> None:
        """Replace every connection: idle ones now, busy ones when their statement ends."""
        self._generation += 1
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._drop(conn)

    async def close(self) -> None:
        """Close idle connections now and busy ones when given back; later calls fail."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._drop_idle()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the client is closed"))
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _take(self) -> db.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the client is closed")
            idle = self._idle_connection()
            if idle is not None:
                return idle
            if self._open < self._size:
                self._open += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake(None)  # someone else may try
                    raise
                self._members[conn] = self._generation
                return conn
            waiter: asyncio.Future[db.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(waiter)
            try:
                conn_or_slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed = waiter.result()
                    if handed is not None:
                        self._give(handed)
                    else:
                        self._wake(None)
                raise
            if conn_or_slot is not None:
                return conn_or_slot
            # None: a connection was dropped; loop to open one in its place

    def _idle_connection(self) -> db.Connection | None:
        """The most recently used idle connection; ones the server ended meanwhile are
        dropped on the way (asyncpg noticed)."""
        while self._idle:
            conn = self._idle.pop()[0]
            if not conn.is_closed():
                return conn
            self._drop(conn)
        return None

    def _give(self, conn: db.Connection) -> None:
        if self._closed or conn.is_closed() or self._members.get(conn) != self._generation:
            self._drop(conn)
            return
        if self._wake(conn):
            return
        self._idle.append((conn, time.monotonic()))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._sweep)

    def _drop(self, conn: db.Connection) -> None:
        """Take `conn` out of the lane: terminated if already closed, else closed gracefully in
        the background (a pending cancel request is sent first); its place frees after."""
        if self._members.pop(conn, None) is None:
            return
        if conn.is_closed():
            conn.terminate()
            self._freed()
            return
        task = asyncio.get_running_loop().create_task(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, conn: db.Connection) -> None:
        try:
            await conn.close(timeout=CLOSE_SECONDS)
        except BaseException:  # timed out, or the loop is closing: do not wait any longer
            conn.terminate()
        finally:
            self._freed()

    def _freed(self) -> None:
        self._open -= 1
        self._wake(None)

    def _wake(self, value: db.Connection | None) -> bool:
        """Hand `value` (a connection, or None: a free place) to the first caller still
        waiting; False when nobody waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return True
        return False

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = time.monotonic() - IDLE_SECONDS
        stale = [c for c, at in self._idle if at <= cutoff]
        self._idle = [(c, at) for c, at in self._idle if at > cutoff]
        for conn in stale:
            self._drop(conn)
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._sweep)
