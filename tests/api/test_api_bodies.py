"""Bad request bodies for POST /foreman/jobs: each is a 4xx with a stable `code`, never a 500,
and no row is written. Sent as raw bytes, so malformed JSON reaches the server as it is."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_support import assert_error

from foreman_rt import db

pytestmark = pytest.mark.db

MiB = 1024 * 1024


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


CASES: list[tuple[str, bytes, str | None]] = [
    ("missing kind", body({"params": {}}), "invalid_request"),
    ("kind empty", body({"kind": ""}), "invalid_kind"),
    ("kind with a space", body({"kind": "send email"}), "invalid_kind"),
    ("kind too long", body({"kind": "k" * 129}), "invalid_kind"),
    ("kind with NUL", body({"kind": "a\u0000b"}), "invalid_kind"),
    ("kind a number", body({"kind": 5}), "invalid_request"),
    ("kind null", body({"kind": None}), "invalid_request"),
    ("unknown field", body({"kind": "k", "colour": "red"}), "invalid_request"),
    ("priority a word", body({"kind": "k", "priority": "high"}), "invalid_request"),
    ("priority a fraction", body({"kind": "k", "priority": 1.5}), "invalid_request"),
    ("priority 10**9", body({"kind": "k", "priority": 10**9}), "invalid_priority"),
    ("priority -10**9", body({"kind": "k", "priority": -(10**9)}), "invalid_priority"),
    ("priority 10**30", body({"kind": "k", "priority": 10**30}), "invalid_priority"),
    ("max_attempts 0", body({"kind": "k", "max_attempts": 0}), "invalid_max_attempts"),
    ("max_attempts 1001", body({"kind": "k", "max_attempts": 1001}), "invalid_max_attempts"),
    ("max_attempts a list", body({"kind": "k", "max_attempts": [1]}), "invalid_request"),
    ("queue empty", body({"kind": "k", "queue": ""}), "invalid_queue"),
    ("queue null", body({"kind": "k", "queue": None}), "invalid_request"),
    ("service control char", body({"kind": "k", "service": "a\nb"}), "invalid_service"),
    (
        "idempotency key empty",
        body({"kind": "k", "idempotency_key": ""}),
        "invalid_idempotency_key",
    ),
    (
        "idempotency key too long",
        body({"kind": "k", "idempotency_key": "x" * 256}),
        "invalid_idempotency_key",
    ),
    ("idempotency key a number", body({"kind": "k", "idempotency_key": 42}), "invalid_request"),
    (
        "scheduled_at naive",
        body({"kind": "k", "scheduled_at": "2030-01-01T00:00:00"}),
        "invalid_scheduled_at",
    ),
    ("scheduled_at a word", body({"kind": "k", "scheduled_at": "tomorrow"}), "invalid_request"),
    (
        "scheduled_at out of range",
        body({"kind": "k", "scheduled_at": "0001-01-01T00:00:00+14:00"}),
        None,
    ),
    ("params with NUL", body({"kind": "k", "params": {"to": "a\u0000b"}}), "invalid_params"),
    ("params key with NUL", body({"kind": "k", "params": {"a\u0000": 1}}), "invalid_params"),
    ("params NaN", b'{"kind": "k", "params": {"x": NaN}}', "invalid_params"),
    ("params lone surrogate", b'{"kind": "k", "params": {"x": "\\ud800"}}', None),
    (
        "params over 1 MiB",
        body({"kind": "k", "params": {"blob": "x" * (MiB + 10)}}),
        "params_too_large",
    ),
    ("malformed JSON", b'{"kind": "k",', "invalid_request"),
    ("not JSON at all", b"kind=k", "invalid_request"),
    ("a JSON array", b'[{"kind": "k"}]', "invalid_request"),
    ("a JSON string", b'"k"', "invalid_request"),
    ("JSON null", b"null", "invalid_request"),
    ("empty body", b"", "invalid_request"),
    ("not UTF-8", b'{"kind": "\xff\xfe"}', None),
    (
        "deeply nested beyond the parser",
        b'{"kind":"k","params":' + b"[" * 5000 + b"]" * 5000 + b"}",
        None,
    ),
]


@pytest.mark.parametrize(("raw", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_enqueue_body_is_4xx_with_a_code_and_writes_nothing(
    http: httpx.AsyncClient, conn: db.Connection, raw: bytes, code: str | None
) -> None:
    r = await http.post("/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    got = assert_error(r, r.status_code, code)
    assert got["code"] != "internal_error"
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_json_body_is_accepted_whatever_the_content_type(
    http: httpx.AsyncClient, conn: db.Connection, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = await http.post("/jobs", content=b'{"kind":"k"}', headers=headers)
    assert r.status_code == 201, r.text
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 1


async def test_body_over_2_mib_is_413_with_a_declared_length(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    raw = body({"kind": "k", "params": {"blob": "x" * (2 * MiB)}})
    assert len(raw) > 2 * MiB
    assert_error(await http.post("/jobs", content=raw), 413, "body_too_large")
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def test_body_over_2_mib_is_413_when_chunked(
    http: httpx.AsyncClient, conn: db.Connection
) -> None:
    async def chunks() -> Any:
        yield b'{"kind": "k", "params": {"blob": "'
        for _ in range(33):
            yield b"x" * 65536
        yield b'"}}'

    r = await http.post("/jobs", content=chunks())
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def test_body_just_under_the_limit_is_read(http: httpx.AsyncClient) -> None:
    # Under 2 MiB but params over 1 MiB: the body is read, then params are refused by size.
    raw = body({"kind": "k", "params": {"blob": "x" * (2 * MiB - 100)}})
    assert len(raw) <= 2 * MiB
    assert_error(await http.post("/jobs", content=raw), 400, "params_too_large")


@pytest.mark.parametrize(
    "path",
    ["/jobs/1/heartbeat", "/runs/1/complete", "/jobs/1/fail", "/claim", "/jobs/claim"],
)
async def test_oversized_bodies_on_worker_routes_are_413(
    http: httpx.AsyncClient, path: str
) -> None:
    raw = body({"worker_id": "w", "result": "x" * (2 * MiB)})
    assert_error(await http.post(path, content=raw), 413, "body_too_large")
