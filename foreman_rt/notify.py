"""The dedicated LISTEN connection: one per process, every channel on it, pinged when idle,
rebuilt with backoff. NOTIFY is a hint; `on_connect` runs after every (re)connect so the owner
can resync from the tables, since notifications sent while disconnected are lost."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from foreman_rt.db import Connection
from foreman_rt.dberrors import connection_lost

log = logging.getLogger("foreman_rt.listener")

Handler = Callable[[str], None]


class Listener:
    """Keeps one LISTEN connection alive and hands each payload to its channel's handler."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        handlers: Mapping[str, Handler],
        *,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        max_backoff: float = 5.0,
        log_level: int = logging.INFO,
    ) -> None:
        self._connect = connect
        self._handlers = dict(handlers)
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_backoff = max_backoff
        self._log_level = log_level
        self._conn: Connection | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with jittered exponential backoff."""
        delay = 0.05
        try:
            while True:
                try:
                    await self._session()
                    delay = 0.05
                except (OSError, TimeoutError, ConnectionError) as exc:
                    _raise_if_cancelling()
                    log.warning("listener connection failed: %s", exc)
                except Exception as exc:  # asyncpg raises many types for a dead socket
                    _raise_if_cancelling()
                    if not connection_lost(exc):
                        raise
                    log.warning("listener connection lost: %s", exc)
                self._lost_connection()
                await self._close()
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self._max_backoff)
                self.reconnects += 1
        finally:
            self.connected.clear()
            await self._close()

    def _lost_connection(self) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and self._on_disconnect is not None:
            self._on_disconnect()

    async def _session(self) -> None:
        conn = await self._connect()
        self._conn = conn
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        for channel in self._handlers:
            await conn.add_listener(channel, self._dispatch)
        self.connected.set()
        log.log(self._log_level, "listening on %s", ", ".join(self._handlers))
        if self._on_connect is not None:
            self._on_connect()
        await self._watch(conn)

    async def _watch(self, conn: Connection) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives in the same step as the connection error, and the listener would reconnect.
        while True:
            try:
                async with asyncio.timeout(self._ping_interval):
                    await self._lost.wait()
            except TimeoutError:
                async with asyncio.timeout(self._ping_timeout):
                    await conn.fetchval("SELECT 1")
                continue
            raise ConnectionError("listener connection closed")

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            handler(str(payload))
        except Exception:
            log.exception("notification handler for %s failed", channel)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 2.0)
        except Exception:
            conn.terminate()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the listener is connected and subscribed."""
        await asyncio.wait_for(self.connected.wait(), timeout)


def _raise_if_cancelling() -> None:
    """Turn an error that raced a cancellation of this task back into the cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
