"""The reference README's curl sequence, run verbatim with the real `curl` against a real
`foreman-rt api` process. Only the port (7011 → a free one) and `<id>` are substituted; the
heartbeat/complete/fail calls send no Content-Type, as in the README. `-sS -w` is appended to
read the HTTP status."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from api_support import WAIT, ApiServer

pytestmark = [
    pytest.mark.db,
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]

# Verbatim from the reference README (quick start, then the API walk-through).
README_CURL = r"""
# Containerized (foreman + Postgres):
make docker-up
curl localhost:7011/foreman/ping

# Enqueue
curl -X POST localhost:7011/foreman/jobs \
-H 'Content-Type: application/json' \
-d '{"kind":"send-email","params":{"to":"x@y.com"},"max_attempts":3,"idempotency_key":"email-42"}'
# Claim one
curl -X POST localhost:7011/foreman/claim \
-H 'Content-Type: application/json' \
-d '{"kinds":["send-email"],"worker_id":"worker-1","lease_seconds":60}'
# Heartbeat / progress
curl -X POST localhost:7011/foreman/jobs/<id>/heartbeat \
-d '{"worker_id":"worker-1","progress_current":12,"progress_total":100,"lease_seconds":60}'
# Complete
curl -X POST localhost:7011/foreman/jobs/<id>/complete \
-d '{"worker_id":"worker-1","result":{"sent":true}}'
# Fail (retryable)
curl -X POST localhost:7011/foreman/jobs/<id>/fail \
-d '{"worker_id":"worker-1","error":"smtp timeout","retryable":true,"backoff_seconds":30}'
# Cancel
curl -X POST localhost:7011/foreman/jobs/<id>/cancel
# Per-attempt history (one row per claim)
curl localhost:7011/foreman/jobs/<id>/runs
# Stream state (SSE; one event per change; closes on terminal)
curl -N localhost:7011/foreman/events/<id>
"""


def readme_commands() -> dict[str, list[str]]:
    """The README's curl commands by the comment above them (continuations joined)."""
    commands: dict[str, list[str]] = {}
    title = ""
    text = README_CURL.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# "):
            title = line[2:].split(" (")[0].split(" /")[0]
        elif line.startswith("curl "):
            name = "Ping" if line.endswith("/foreman/ping") else title
            commands[name] = shlex.split(line)
    return commands


COMMANDS = readme_commands()


def test_readme_commands_were_all_found() -> None:
    assert list(COMMANDS) == [
        "Ping",
        "Enqueue",
        "Claim one",
        "Heartbeat",
        "Complete",
        "Fail",
        "Cancel",
        "Per-attempt history",
        "Stream state",
    ]
    for name in ("Heartbeat", "Complete", "Fail"):
        assert "-H" not in COMMANDS[name], "the README sends these without a Content-Type"


@dataclass
class Readme:
    """Runs the README's commands against one server."""

    port: int
    job_id: str = ""
    transcript: list[str] = field(default_factory=list)

    def argv(self, name: str) -> list[str]:
        return [
            a.replace("localhost:7011", f"localhost:{self.port}").replace("<id>", self.job_id)
            for a in COMMANDS[name]
        ]

    async def run(self, name: str) -> tuple[int, Any]:
        """Run one command; (HTTP status, JSON body or None)."""
        argv = [*self.argv(name), "-sS", "--max-time", "20", "-w", "\n%{http_code}"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, f"{shlex.join(argv)} failed: {err.decode()}"
        body, _, status = out.decode().rpartition("\n")
        self.transcript.append(f"{name}: {status} {body[:200]}")
        return int(status), json.loads(body) if body.strip() else None

    async def expect(self, name: str, status: int) -> Any:
        got, body = await self.run(name)
        assert got == status, f"{name}: expected {status}, got {got} {body}\n" + "\n".join(
            self.transcript
        )
        return body


class CurlStream:
    """`curl -N …/events/<id>` in the background; events as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.ids: list[str] = []
        self.tail = ""
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := (await self.proc.stdout.readline()).decode():
                if line.startswith("id: "):
                    self.ids.append(line[4:].strip())
                elif line.startswith("data: "):
                    self.events.put_nowait(json.loads(line[6:]))
                elif line.startswith("event: "):
                    assert line == "event: job\n", line
                elif not line.startswith(":") and line.strip():
                    self.tail += line
        finally:
            self.events.put_nowait(None)

    async def next(self) -> dict[str, Any]:
        event = await asyncio.wait_for(self.events.get(), WAIT)
        assert event is not None, "the stream ended early"
        return event

    async def closed(self) -> tuple[int, str]:
        """Wait for curl to exit (the server closed the stream): (exit code, -w status)."""
        await asyncio.wait_for(self.task, WAIT)
        code = await asyncio.wait_for(self.proc.wait(), WAIT)
        assert self.events.get_nowait() is None, "events after the terminal state"
        return code, self.tail.strip()


async def start_stream(readme: Readme) -> CurlStream:
    argv = [*readme.argv("Stream state"), "-sS", "--max-time", "30", "-w", "\n%{http_code}"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    return CurlStream(proc)


async def test_readme_sequence_enqueue_claim_heartbeat_complete(api: ApiServer) -> None:
    readme = Readme(api.port)
    ping = await readme.expect("Ping", 200)
    assert "online" in ping["message"]

    job = await readme.expect("Enqueue", 201)
    assert job["kind"] == "send-email" and job["params"] == {"to": "x@y.com"}
    assert job["max_attempts"] == 3 and job["idempotency_key"] == "email-42"
    again = await readme.expect("Enqueue", 409)
    assert again["code"] == "duplicate_idempotency_key" and again["job"]["id"] == job["id"]

    claimed = await readme.expect("Claim one", 200)
    assert claimed["job"]["id"] == job["id"] and claimed["run"]["worker_id"] == "worker-1"
    readme.job_id = claimed["job"]["id"]
    stream = await start_stream(readme)
    try:
        assert (await stream.next())["status"] == "running"

        run = await readme.expect("Heartbeat", 200)
        assert (run["progress_current"], run["progress_total"]) == (12, 100)
        assert run["cancel_requested"] is False
        event = await stream.next()
        assert event["current_run"]["progress_current"] == 12

        done = await readme.expect("Complete", 200)
        assert done["status"] == "succeeded" and done["result"] == {"sent": True}
        assert (await stream.next())["status"] == "succeeded"
        code, status = await stream.closed()
        assert (code, status) == (0, "200")
        assert len(stream.ids) == 3 and len(set(stream.ids)) == 3
    finally:
        if stream.proc.returncode is None:
            stream.proc.kill()

    lost = await readme.expect("Fail", 409)
    assert lost["code"] == "lease_lost"
    unchanged = await readme.expect("Cancel", 200)
    assert unchanged["status"] == "succeeded" and unchanged["cancel_requested"] is False
    runs = await readme.expect("Per-attempt history", 200)
    assert [(r["attempt"], r["worker_id"], r["status"]) for r in runs] == [
        (1, "worker-1", "succeeded")
    ]
    assert runs[0]["result"] == {"sent": True}
    assert (runs[0]["progress_current"], runs[0]["progress_total"]) == (12, 100)

    # The final state, through a fresh stream: one event, then the stream closes.
    final = await start_stream(readme)
    try:
        assert (await final.next())["status"] == "succeeded"
        assert await final.closed() == (0, "200")
    finally:
        if final.proc.returncode is None:
            final.proc.kill()


async def test_readme_sequence_enqueue_claim_heartbeat_fail_cancel(api: ApiServer) -> None:
    readme = Readme(api.port)
    await readme.expect("Ping", 200)
    job = await readme.expect("Enqueue", 201)
    claimed = await readme.expect("Claim one", 200)
    readme.job_id = claimed["job"]["id"]
    assert readme.job_id == job["id"]
    stream = await start_stream(readme)
    try:
        assert (await stream.next())["status"] == "running"
        await readme.expect("Heartbeat", 200)
        assert (await stream.next())["current_run"]["progress_current"] == 12

        failed = await readme.expect("Fail", 200)
        assert failed["status"] == "pending" and failed["error"] == "smtp timeout"
        backoff = datetime.fromisoformat(failed["scheduled_at"]) - datetime.fromisoformat(
            failed["updated_at"]
        )
        assert abs(backoff.total_seconds() - 30) < 0.01, backoff
        event = await stream.next()
        assert event["status"] == "pending" and event["current_run"] is None

        lost = await readme.expect("Complete", 409)
        assert lost["code"] == "lease_lost"

        cancelled = await readme.expect("Cancel", 200)
        assert cancelled["status"] == "cancelled"
        assert (await stream.next())["status"] == "cancelled"
        assert await stream.closed() == (0, "200")
    finally:
        if stream.proc.returncode is None:
            stream.proc.kill()

    runs = await readme.expect("Per-attempt history", 200)
    assert [(r["attempt"], r["worker_id"], r["status"], r["error"]) for r in runs] == [
        (1, "worker-1", "failed", "smtp timeout")
    ]
    # A cancelled job is not claimable, whatever its retry time.
    got, body = await readme.run("Claim one")
    assert (got, body) == (204, None)
