"""Helpers for the restart, load, database-error and hostile-input scenarios: `foreman-rt api`
processes reached over HTTP, Prometheus scraping, percentiles, throwaway databases, a connection
that outlives server restarts, and handlers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from harness import Procs, free_port

from foreman_rt import Client, JobContext, db
from foreman_rt.dberrors import is_transient

WAIT = 60.0  # upper bound for a process to come up; the happy path takes a second or two


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll `check` until it is true; the seconds that took (AssertionError after `timeout`)."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(interval)


# -- foreman-rt api ---------------------------------------------------------------------------


@dataclass
class Api:
    """A running `foreman-rt api` process."""

    proc: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT
    output: Path | None = None

    def url(self, path: str) -> str:
        """The absolute URL of `path` (e.g. /foreman/jobs)."""
        return self.base + path

    def log(self) -> str:
        """What the process wrote so far (when started with an output file)."""
        if self.output is None or not self.output.exists():
            return ""
        return self.output.read_text(errors="replace")


async def start_api(procs: Procs, *options: str, output: Path | None = None) -> Api:
    """Start `foreman-rt api` on a free port (its output to `output` when given) and wait until
    /foreman/ping answers."""
    port = free_port()
    argv = [*procs.base(), "api", "--port", str(port), *options]
    if output is None:
        proc = subprocess.Popen(argv, env=procs.env())
    else:
        with output.open("ab") as out:
            proc = subprocess.Popen(argv, env=procs.env(), stdout=out, stderr=out)
    procs.others.append(proc)
    api = Api(proc, f"http://127.0.0.1:{port}", output)
    async with httpx.AsyncClient(timeout=2.0) as http:

        async def up() -> bool:
            assert proc.poll() is None, f"foreman-rt api exited with {proc.returncode}"
            try:
                return (await http.get(api.url("/foreman/ping"))).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, WAIT, "foreman-rt api answering /foreman/ping", 0.1)
    return api


def start_worker_with(
    procs: Procs, handlers: str, *options: str, output: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a worker process running `handlers` (module:object) instead of the reliability
    handlers; it is stopped with the scenario's other processes."""
    argv = [*procs.base(), "worker", "--handlers", handlers, *options]
    if output is None:
        proc = subprocess.Popen(argv, env=procs.env())
    else:
        with output.open("ab") as out:
            proc = subprocess.Popen(argv, env=procs.env(), stdout=out, stderr=out)
    procs.workers.append(proc)
    return proc


@contextlib.asynccontextmanager
async def client_for(dsn: str, schema: str) -> AsyncIterator[Client]:
    """A connected Client, closed afterwards."""
    client = await Client.connect(dsn, schema)
    try:
        yield client
    finally:
        await client.close()


class HttpConnection:
    """One persistent HTTP/1.1 connection that sends JSON requests and reads JSON replies: the
    load test's producer. httpx cannot drive 500 connections from one process here: its pool's
    bookkeeping grows with the connection count (about 130 requests/s at 500 connections against
    about 1,200 with this client), and producers starved that long leave their keep-alive
    connections idle past uvicorn's 5 s keep-alive timeout, so requests fail with ReadError."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {self.host}:{self.port}\r\nContent-Type: application/json\r\n{extra}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, data: Any, timeout: float = 60.0) -> tuple[int, Any]:
        """POST `data` as JSON; (status, decoded body). Transport errors propagate (the
        connection is dropped and the next request opens a new one)."""
        body = json.dumps(data).encode()
        request = (
            f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            async with asyncio.timeout(timeout):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                assert self._reader is not None
                self._writer.write(request)
                head = await self._reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                )
                payload = await self._reader.readexactly(int(fields["content-length"]))
                if fields.get("connection", "").lower() == "close":
                    self.close()
                return status, json.loads(payload) if payload else None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


# -- Prometheus -------------------------------------------------------------------------------

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample `name` (with at least these labels) in Prometheus text, or None."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(_LABEL.findall(label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


async def scrape(url: str, name: str, **labels: str) -> float | None:
    """One sample from a /metrics endpoint; None when it does not answer or lacks the sample."""
    try:
        async with httpx.AsyncClient(timeout=3.0) as http:
            reply = await http.get(url)
    except httpx.TransportError:
        return None
    return metric(reply.text, name, **labels) if reply.status_code == 200 else None


# -- figures ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (NaN for no values)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for a report."""
    return round(seconds * 1000, 1)


# -- databases --------------------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def database_name(dsn: str) -> str:
    """The database `dsn` connects to."""
    return urlsplit(dsn).path.lstrip("/")


@contextlib.asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    """A new, empty database on the server of `dsn`; its DSN. Dropped, with whatever is still
    connected to it, afterwards."""
    name = "chaos_" + secrets.token_hex(4)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(dsn, name)
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def alter_database(
    admin: asyncpg.Connection, dsn: str, setting: str, value: str | None
) -> None:
    """ALTER DATABASE (of `dsn`) SET setting = value, or RESET it for None; new sessions only."""
    name = database_name(dsn)
    if value is None:
        await admin.execute(f'ALTER DATABASE "{name}" RESET {setting}')
    else:
        await admin.execute(f"ALTER DATABASE \"{name}\" SET {setting} = '{value}'")


async def terminate_backends(admin: asyncpg.Connection, dsn: str, keep: Sequence[int] = ()) -> int:
    """Terminate every session on the database of `dsn` but those in `keep`; how many."""
    value = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid() AND NOT (pid = ANY($2::int[]))",
        database_name(dsn),
        list(keep),
    )
    return int(value)


class Reconnecting:
    """A connection in `schema` that reconnects when the server went away: each query retries
    transient failures until `timeout`."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.conn: db.Connection | None = None

    async def fetch(self, sql: str, *args: Any, timeout: float = WAIT) -> list[asyncpg.Record]:
        """`fetch`, across reconnects."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await db.connect(self.dsn, self.schema, timeout=5.0)
                return await self.conn.fetch(sql, *args)
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                await self.close()
                await asyncio.sleep(0.05)

    async def fetchval(self, sql: str, *args: Any, timeout: float = WAIT) -> Any:
        """`fetchval`, across reconnects."""
        rows = await self.fetch(sql, *args, timeout=timeout)
        return rows[0][0] if rows else None

    async def close(self) -> None:
        """Close (or drop) the current connection."""
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()


# -- handlers that misbehave on purpose (test_hostile_input) ----------------------------------
# Each produces text PostgreSQL cannot store as is: a NUL character, or a lone surrogate such as
# the ones Python makes of undecodable bytes in file names (os.listdir, surrogateescape).


async def raise_nul(params: Any, ctx: JobContext) -> None:
    """Fails with an error message holding a NUL character."""
    raise ValueError("unexpected byte \x00 in record 7")


async def raise_surrogate(params: Any, ctx: JobContext) -> None:
    """Fails with an error message holding a lone surrogate (an undecodable file name)."""
    raise ValueError("cannot parse report-\udcff.csv")


async def return_surrogate(params: Any, ctx: JobContext) -> dict[str, str]:
    """Returns a result holding a lone surrogate."""
    return {"file": "report-\udcff.csv"}


async def return_nan(params: Any, ctx: JobContext) -> dict[str, float]:
    """Returns a result that is not JSON (documented: the attempt fails, 'unusable result')."""
    return {"ratio": float("nan")}


async def progress_nul(params: Any, ctx: JobContext) -> str:
    """Reports progress with a NUL character in the message, then succeeds."""
    await ctx.progress(1, 2, "step \x00 one")
    await asyncio.sleep(0.6)  # past the heartbeat that carries the progress
    return "done"


async def progress_surrogate(params: Any, ctx: JobContext) -> str:
    """Reports progress with a lone surrogate in the message, then succeeds."""
    await ctx.progress(1, 2, "reading report-\udcff.csv")
    await asyncio.sleep(0.6)
    return "done"


HOSTILE_HANDLERS = {
    "hostile.raise_nul": raise_nul,
    "hostile.raise_surrogate": raise_surrogate,
    "hostile.return_surrogate": return_surrogate,
    "hostile.return_nan": return_nan,
    "hostile.progress_nul": progress_nul,
    "hostile.progress_surrogate": progress_surrogate,
}
