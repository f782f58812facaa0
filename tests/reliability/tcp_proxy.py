"""A TCP proxy on loopback for partition scenarios. It runs its own event loop in a thread, so
it keeps forwarding while the test blocks (waiting for processes, say).

`blackhole()` stops forwarding in both directions but keeps every socket open: peers see a
silent, half-open connection, as in a network partition, and new connections are accepted but
never reach the server. `heal()` resumes forwarding; bytes held during the partition are then
delivered in order, as TCP retransmission would deliver them. `cut()` resets every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listen_port = listen_port
        self.port = 0
        self.accepted = 0
        self.bytes_forwarded = 0
        self.bytes_held = 0  # read during a partition, delivered (or dropped) later
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def for_dsn(cls, dsn: str) -> TcpProxy:
        """A proxy in front of the TCP server `dsn` names."""
        parts = urlsplit(dsn)
        assert parts.hostname, f"not a TCP DSN: {dsn!r}"
        return cls(parts.hostname, parts.port or 5432)

    def dsn(self, dsn: str) -> str:
        """`dsn` rewritten to go through this proxy."""
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- control (from any thread) -----------------------------------------------------------

    def start(self) -> TcpProxy:
        """Start listening; returns self."""
        self._thread.start()
        self._call(self._start())
        return self

    def blackhole(self) -> None:
        """Stop forwarding both ways; keep every socket open."""
        self._call(self._set_flowing(False))

    def heal(self) -> None:
        """Resume forwarding, held bytes first."""
        self._call(self._set_flowing(True))

    def cut(self) -> None:
        """Reset every open connection (new ones are still accepted)."""
        self._call(self._cut())

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        return len(self._tasks)

    def close(self) -> None:
        """Stop listening, close every connection, stop the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    # -- the proxy's own loop -----------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> None:
        for w in list(self._writers):
            w.transport.abort()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.accepted += 1
        self._writers.add(c_writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        s_writer: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # partitioned: the connection never reaches the server
            s_reader, s_writer = await asyncio.open_connection(*self.target)
            self._writers.add(s_writer)
            await asyncio.gather(self._pump(c_reader, s_writer), self._pump(s_reader, c_writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # close(): this connection's task ends here, quietly
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                if not self._flowing.is_set():  # read as the partition began: hold it
                    self.bytes_held += len(data)
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
                self.bytes_forwarded += len(data)
        except OSError:
            pass
        finally:
            # One side closed: close the other too (a half-close is not useful to PostgreSQL).
            writer.transport.abort()
