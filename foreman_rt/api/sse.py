"""Server-Sent Event streams: one job until it is terminal, or a tenant's jobs for dashboards.
Events carry `id:` (the state's version, its last update time in microseconds), so a client
reconnecting with Last-Event-ID gets only what changed; `: keepalive` comments tell a quiet
stream from a broken one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from foreman_rt.api.hub import Hub, State, Subscriber
from foreman_rt.jobs import TERMINAL, Job, Run, RunStatus

RESUME_LIMIT = 1000


def version(state: State) -> int:
    """Microseconds since the epoch of the state's latest change."""
    job, run = state
    stamps = [job["updated_at"]] + ([run["updated_at"]] if run else [])
    return max(int(datetime.fromisoformat(s).timestamp() * 1_000_000) for s in stamps)


def payload(state: State) -> dict[str, Any]:
    """The event data: the job, plus `current_run` (the running attempt, or null)."""
    job, run = state
    data = Job.model_validate(job).to_json()
    running = run is not None and run["status"] == RunStatus.RUNNING
    data["current_run"] = Run.model_validate(run).to_json() if running and run else None
    return data


def event(state: State) -> str:
    """One SSE event."""
    return f"id: {version(state)}\nevent: job\ndata: {json.dumps(payload(state))}\n\n"


def parse_last_event_id(value: str | None) -> int | None:
    """Last-Event-ID as a version, or None when absent or unreadable."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= 17:  # up to year ~5138 in µs
        return int(text)
    return None


async def _next(sub: Subscriber, keepalive: float) -> State | None:
    """The next state for `sub`; None on a keepalive tick or a resync request."""
    get = asyncio.ensure_future(sub.inbox.get())
    resync = asyncio.ensure_future(sub.resync.wait())
    done, pending = await asyncio.wait(
        {get, resync}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    if get in done:
        return get.result()
    return None


async def job_stream(
    hub: Hub, job_id: int, tenant: str, last: int | None, keepalive: float
) -> AsyncIterator[str]:
    """The current state at once, then each change, closing after the terminal state."""
    sub = Subscriber(tenant=tenant, job_id=job_id)
    hub.subscribe(sub)
    try:
        states = await hub.read([job_id], tenant)
        while states:
            state = states[0]
            if last is None or version(state) > last:
                last = version(state)
                yield event(state)
            if state[0]["status"] in TERMINAL:
                return
            nxt = await _next(sub, keepalive)
            if sub.dropped:
                return
            if nxt is not None:
                states = [nxt]
                continue
            if sub.resync.is_set():
                sub.resync.clear()
                states = await hub.read([job_id], tenant)
            else:
                yield ": keepalive\n\n"
    finally:
        hub.unsubscribe(sub)


SENT_MEMORY = 10_000


def _fresh(sub: Subscriber, state: State) -> bool:
    """Whether `state` is newer than what this stream already sent for its job."""
    job_id, v = int(state[0]["id"]), version(state)
    if sub.sent.get(job_id, -1) >= v:
        return False
    if len(sub.sent) >= SENT_MEMORY:
        sub.sent.clear()
    sub.sent[job_id] = v
    return True


async def tenant_stream(
    hub: Hub,
    tenant: str,
    queue: str | None,
    kind: str | None,
    last: int | None,
    keepalive: float,
) -> AsyncIterator[str]:
    """Every change to the tenant's jobs (optionally one queue or kind), resumable."""
    sub = Subscriber(tenant=tenant, queue=queue, kind=kind)
    sub.opened_at = await hub.database_now()
    hub.subscribe(sub)
    try:
        if last is not None:
            for state in await hub.changed_since(tenant, last / 1e6, queue, kind, RESUME_LIMIT):
                if _fresh(sub, state):
                    yield event(state)
        yield ": stream open\n\n"
        while True:
            nxt = await _next(sub, keepalive)
            if sub.dropped:
                return
            if nxt is not None:
                if _fresh(sub, nxt):
                    yield event(nxt)
            elif sub.resync.is_set():
                sub.resync.clear()
                yield ": resync (notifications were missed; refetch state)\n\n"
            else:
                yield ": keepalive\n\n"
    finally:
        hub.unsubscribe(sub)
