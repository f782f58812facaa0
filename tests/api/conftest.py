"""Fixtures for the HTTP API tests: the app in process (non-streaming routes) and real
`foreman-rt api` processes (SSE, curl, keys, anything a server process must show)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import REPORT, ApiServer, StartApi, check_envelope, spawn_api

from foreman_rt.api import ServiceSettings, create_app


@pytest.fixture
async def api_app(pg_dsn: str, schema: str) -> AsyncIterator[Any]:
    """The app on the test's schema, started by hand (lifespan=False)."""
    app = create_app(ServiceSettings(dsn=pg_dsn, schema=schema), lifespan=False)
    await app.state.foreman.start()
    try:
        yield app
    finally:
        await app.state.foreman.stop()


@pytest.fixture
async def http(api_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of /foreman (127.0.0.1, keyless); 500s come back as replies."""
    transport = httpx.ASGITransport(app=api_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver/foreman",
        event_hooks={"response": [check_envelope]},
    ) as client:
        yield client


@pytest.fixture
async def start_api(pg_dsn: str, schema: str, tmp_path: Path) -> AsyncIterator[StartApi]:
    """Start real `foreman-rt api` processes on the test's schema; SIGTERM at teardown."""
    servers: list[ApiServer] = []

    async def start(*options: str) -> ApiServer:
        server = spawn_api(pg_dsn, schema, tmp_path, *options)
        servers.append(server)
        await server.wait_ready()
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def api(start_api: StartApi) -> ApiServer:
    """One real keyless server on 127.0.0.1."""
    return await start_api()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the API tests measured, whatever the capture mode."""
    if REPORT:
        terminalreporter.section("foreman-rt HTTP API measurements")
        for name, value in REPORT.items():
            terminalreporter.write_line(f"{name}: {value}")
