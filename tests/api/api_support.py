"""Helpers for the HTTP API tests: a real `foreman-rt api` process, the `foreman-rt` command,
an SSE reader that never loses an event to a timeout, and checks of the JSON error envelope."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WAIT = 5.0  # upper bound for anything a test waits on; the happy path takes milliseconds
KEEPALIVE = 0.3  # the servers these tests start send SSE keepalives this often
_ENV_DROP = {"FOREMAN_DSN", "DATABASE_URL", "FOREMAN_SCHEMA", "FOREMAN_DEFAULT_LEASE_SEC"}

# Numbers the tests report at the end of the run (see conftest.pytest_terminal_summary).
REPORT: dict[str, str] = {}


def clean_env() -> dict[str, str]:
    """The environment for foreman-rt subprocesses: no DSN or schema leaking in from outside."""
    return {k: v for k, v in os.environ.items() if k not in _ENV_DROP}


def foreman_argv(dsn: str, schema: str, *args: str) -> list[str]:
    """`foreman-rt --dsn DSN --schema S ARGS...`, run with this interpreter."""
    return [sys.executable, "-m", "foreman_rt", "--dsn", dsn, "--schema", schema, *args]


async def foreman(
    dsn: str, schema: str, *args: str, code: int | None = 0, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the foreman-rt command (off the event loop); assert its exit code unless None."""
    proc = await asyncio.to_thread(
        subprocess.run,
        foreman_argv(dsn, schema, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )
    if code is not None:
        assert proc.returncode == code, (
            f"foreman-rt {' '.join(args)} exited {proc.returncode}, expected {code}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


async def create_key(dsn: str, schema: str, tenant: str, *options: str) -> dict[str, Any]:
    """`foreman-rt keys create --tenant T --output json`: the key and its description."""
    proc = await foreman(
        dsn, schema, "keys", "create", "--tenant", tenant, *options, "--output", "json"
    )
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["key"].startswith("frt_"), data
    return data


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The JSON error envelope


async def check_envelope(response: httpx.Response) -> None:
    """httpx response hook: every non-2xx reply (but 3xx) is JSON with "error" and "code"."""
    if response.status_code < 400:
        return
    await response.aread()
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.request.method} {response.request.url} -> {response.status_code} "
            f"with a body that is not JSON: {response.text[:300]!r}"
        ) from None
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("code"), str) and body["code"], body


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The reply is the error envelope with this status (and code)."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where} -> {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    if code is not None:
        assert body.get("code") == code, f"{where}: expected code {code!r}, got {body}"
    return body


def assert_ok(response: httpx.Response, status: int = 200) -> Any:
    """The reply has this status; its JSON body (None for an empty one)."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where} -> {response.status_code}: {response.text}"
    return response.json() if response.content else None


def http_client(base_url: str, key: str | None = None, **options: Any) -> httpx.AsyncClient:
    """An httpx client on `base_url` (…/foreman) that checks every error envelope."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    options.setdefault("timeout", httpx.Timeout(10.0, read=30.0))
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        event_hooks={"response": [check_envelope]},
        **options,
    )


# ---------------------------------------------------------------------------------------------
# A real `foreman-rt api` process


@dataclass
class ApiServer:
    """One `foreman-rt api` subprocess on a free port of 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.origin}/foreman"

    def client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        """A client of this server (optionally with an API key)."""
        return http_client(self.base, key, **options)

    def log(self) -> str:
        """What the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until /foreman/ping answers; fail with the server's output if it exits."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"foreman-rt api exited with {self.proc.returncode}:\n{self.log()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    r = await http.get(f"{self.base}/ping")
                    if r.status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"foreman-rt api did not answer /foreman/ping:\n{self.log()}")

    async def stop(self) -> int | None:
        """SIGTERM, then wait (SIGKILL after 10 s); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10.0
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


StartApi = Callable[..., Awaitable[ApiServer]]


def spawn_api(
    dsn: str, schema: str, log_dir: Path, *options: str, port: int | None = None
) -> ApiServer:
    """Start `foreman-rt api --port P --keepalive 0.3 OPTIONS` (not yet waited for)."""
    port = port or free_port()
    log_path = log_dir / f"foreman-api-{port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            foreman_argv(
                dsn, schema, "api", "--port", str(port), "--keepalive", str(KEEPALIVE), *options
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    return ApiServer(proc=proc, port=port, log_path=log_path)


# ---------------------------------------------------------------------------------------------
# Server-Sent Events


@dataclass
class SseItem:
    """An event (id, event, data) or a comment line, with the time it arrived."""

    at: float
    comment: str | None = None
    id: str | None = None
    event: str | None = None
    data: Any = None

    @property
    def is_event(self) -> bool:
        return self.comment is None


@dataclass
class SseStream:
    """Reads an SSE response in a task of its own, so waiting with a timeout never loses an
    event; `None` in the queue means the server closed the stream."""

    response: httpx.Response
    items: asyncio.Queue[SseItem | None] = field(default_factory=asyncio.Queue)
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                now = time.perf_counter()
                if not line:
                    if fields or data:
                        payload = json.loads("\n".join(data)) if data else None
                        item = SseItem(
                            at=now, id=fields.get("id"), event=fields.get("event"), data=payload
                        )
                        self.items.put_nowait(item)
                    fields, data = {}, []
                elif line.startswith(":"):
                    self.items.put_nowait(SseItem(at=now, comment=line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
        except Exception as exc:
            self.error = exc
        finally:
            self.items.put_nowait(None)

    async def next(self, timeout: float = WAIT) -> SseItem | None:
        """The next item (event or comment); None when the stream has ended."""
        return await asyncio.wait_for(self.items.get(), timeout)

    async def next_event(self, timeout: float = WAIT) -> SseItem:
        """The next event, skipping comments; fails if the stream ends first."""
        deadline = time.monotonic() + timeout
        while True:
            item = await self.next(max(0.01, deadline - time.monotonic()))
            assert item is not None, f"the stream ended while an event was expected ({self.error})"
            if item.is_event:
                return item

    async def collect(self, seconds: float) -> list[SseItem]:
        """Everything arriving within `seconds` (stops early, without None, at the end)."""
        out: list[SseItem] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await self.next(left)
            except TimeoutError:
                break
            if item is None:
                self.items.put_nowait(None)
                break
            out.append(item)
        return out

    async def until_closed(self, timeout: float = WAIT) -> list[SseItem]:
        """Every remaining item until the server closes the stream (fails if it stays open)."""
        out: list[SseItem] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"the stream stayed open; got {[i.comment or i.data for i in out]}"
            try:
                item = await self.next(left)
            except TimeoutError:
                continue
            if item is None:
                assert self.error is None, f"the stream broke: {self.error!r}"
                return out
            out.append(item)


@asynccontextmanager
async def open_sse(
    http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseStream]:
    """GET an SSE route (real server only: in-memory transports buffer the whole body)."""
    async with http.stream("GET", path, headers=headers or {}) as response:
        assert response.status_code == 200, f"{path} -> {response.status_code}"
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        stream = SseStream(response)
        stream.start()
        try:
            yield stream
        finally:
            assert stream.task is not None
            stream.task.cancel()
            with contextlib.suppress(BaseException):
                await stream.task


# ---------------------------------------------------------------------------------------------
# Small things


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = WAIT, what: str = "condition"
) -> None:
    """Poll `check` every 20 ms until true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]
