"""One LISTEN connection for the whole service, fanned out in process: job streams, tenant
streams and metrics all read the same notifications. Each subscriber has its own bounded
buffer; a subscriber that falls behind is dropped, never the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from foreman_rt import db
from foreman_rt.api.metrics import ServiceMetrics
from foreman_rt.config import Channels
from foreman_rt.dberrors import is_transient
from foreman_rt.demand import Demand
from foreman_rt.notify import Listener
from foreman_rt.payloads import parse_cancel, parse_events
from foreman_rt.sql import query

log = logging.getLogger("foreman_rt.api.hub")

BUFFER = 256
DEMAND_TTL = 10.0  # seconds the service's wish for insert notifications lasts unless renewed
CREATION_WINDOW = 500
State = tuple[dict[str, Any], dict[str, Any] | None]


@dataclass(eq=False)
class Subscriber:
    """A stream's inbox: job states, plus a flag set when it was dropped for being slow."""

    tenant: str
    job_id: int | None = None
    queue: str | None = None
    kind: str | None = None
    inbox: asyncio.Queue[State] = field(default_factory=lambda: asyncio.Queue(BUFFER))
    dropped: bool = False
    sent: dict[int, int] = field(default_factory=dict)  # job id -> version last sent
    resync: asyncio.Event = field(default_factory=asyncio.Event)
    opened_at: datetime | None = None  # database time the stream opened: older jobs are not new

    def wants(self, job: dict[str, Any]) -> bool:
        """Whether this stream shows `job`."""
        if job["tenant"] != self.tenant:
            return False
        if self.job_id is not None:
            return int(job["id"]) == self.job_id
        return (self.queue is None or job["queue"] == self.queue) and (
            self.kind is None or job["kind"] == self.kind
        )


class Hub:
    """Receives notifications, reads the changed jobs once, and hands them to subscribers."""

    def __init__(self, pool: db.Pool, dsn: str, schema: str, metrics: ServiceMetrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._subs: set[Subscriber] = set()
        self._pending: set[int] = set()
        self._resync_all = False
        self._new_jobs = False
        self._max_id: int | None = None
        self._dirty = asyncio.Event()
        holder = f"api:{uuid.uuid4().hex[:12]}"
        self._demand = Demand(pool, holder, None, DEMAND_TTL)
        # Standing row while the service runs: inserts count themselves (the enqueue counter it
        # exports) and state changes notify <schema>_events (its streams and state counters).
        self._standing = Demand(
            pool, holder + ":standing", (), DEMAND_TTL, counts=True, events=True
        )
        self._demand_changed = asyncio.Event()
        channels = Channels.for_schema(schema)
        self.listener = Listener(
            lambda: db.connect(dsn, schema, application_name="foreman-rt api listener"),
            {
                channels.events: self._on_events,
                channels.wake: self._on_wake,
                channels.cancel: self._on_cancel,
            },
            on_connect=self._on_connect,
            on_disconnect=lambda: self._metrics.listener_connected.set(0),
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Ask inserts to count themselves and state changes to notify, then start listening
        and fanning out."""
        try:
            await self._standing.write()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not ask for counts and state changes yet: %s", exc)
        self._tasks = [
            asyncio.create_task(self.listener.run(), name="api-listener"),
            asyncio.create_task(self._fan_out(), name="api-fan-out"),
            asyncio.create_task(self._demand_loop(), name="api-demand"),
        ]

    async def stop(self) -> None:
        """Stop listening."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._metrics.listener_connected.set(0)
        try:
            await self._demand.disarm()
            await self._standing.disarm()
        except Exception as exc:
            log.warning("could not withdraw the wake demand: %s (it expires by itself)", exc)

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self.listener.connected.is_set()

    def subscribe(self, sub: Subscriber) -> None:
        """Start delivering states to `sub`."""
        self._subs.add(sub)
        self._metrics.sse_clients.set(len(self._subs))
        if sub.job_id is None and not self._demand.armed:
            self._demand_changed.set()

    def unsubscribe(self, sub: Subscriber) -> None:
        """Stop delivering to `sub`."""
        self._subs.discard(sub)
        self._metrics.sse_clients.set(len(self._subs))

    def _on_wake(self, payload: str) -> None:
        if self._wants_inserts():
            self._new_jobs = True  # tenant streams show creations too
            self._dirty.set()

    def _on_events(self, payload: str) -> None:
        events = parse_events(payload)
        self._metrics.on_events(events)
        if events.overflow:
            self._resync_all = True
        self._pending |= events.ids
        self._dirty.set()

    def _on_cancel(self, payload: str) -> None:
        ids = parse_cancel(payload)  # a cancel request on a running job: streams show it
        if ids is None:
            self._resync_all = True
        else:
            self._pending |= ids
        self._dirty.set()

    def _on_connect(self) -> None:
        self._metrics.listener_connected.set(1)
        self._demand.forget()  # a restarted database has lost the unlogged demand rows
        self._standing.forget()
        self._demand_changed.set()
        self._resync_all = True  # anything may have changed while we were away
        self._dirty.set()

    async def _fan_out(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            ids, self._pending = self._pending, set()
            created: set[int] = set()
            if self._new_jobs:
                self._new_jobs = False
                created = await self._created_ids() - ids
                ids |= created
            if self._resync_all:
                self._resync_all = False
                for sub in self._subs:
                    sub.resync.set()
            if not ids:
                continue
            try:
                states = await self.read(list(ids))
            except Exception as exc:
                log.warning("reading changed jobs failed: %s", exc)
                for sub in self._subs:
                    sub.resync.set()
                continue
            self._metrics.on_states(states)
            self._deliver(states, created)

    def _wants_inserts(self) -> bool:
        return any(sub.job_id is None for sub in self._subs)

    async def _demand_loop(self) -> None:
        """Tenant streams show new jobs, so while one is open the service asks for insert
        notifications; after arming (and again once the inserts then in flight have ended) it
        reads the newest jobs, which covers inserts that did not notify."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEMAND_TTL / 3):  # not wait_for: see the runtime
                    await self._demand_changed.wait()
            self._demand_changed.clear()
            try:
                await self._demand_tick()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._demand.forget()
                self._standing.forget()
                log.warning("updating the wake demand failed (%s)", exc)
                await asyncio.sleep(1.0)
                self._demand_changed.set()

    async def _demand_tick(self) -> None:
        if self._standing.armed:
            await self._standing.write()
        else:
            # State changes that checked for a listener before the row was visible did not
            # notify: once they have ended, every stream reads its jobs again.
            in_flight = await self._standing.arm()
            if in_flight:
                await self._standing.settled(in_flight, 1.0)
            self._resync_all = True
            self._dirty.set()
        if not self._wants_inserts() or not self.connected:
            await self._demand.disarm()
            return
        if self._demand.armed:
            await self._demand.renew()
            return
        in_flight = await self._demand.arm()
        self._new_jobs = True
        self._dirty.set()
        if in_flight:
            await self._demand.settled(in_flight, 1.0)
            self._new_jobs = True
            self._dirty.set()

    async def _created_ids(self) -> set[int]:
        """Ids of recently created jobs. Ids are drawn before commit, so a lower id may commit
        after a higher one was seen: re-read a window behind the highest id seen (streams skip
        states they already sent)."""
        try:
            if self._max_id is None:
                self._max_id = int(
                    await self._pool.fetchval("SELECT coalesce(max(id), 0) FROM jobs")
                )
            rows = await self._pool.fetch(
                query("jobs_after"), max(0, self._max_id - CREATION_WINDOW), 2 * CREATION_WINDOW
            )
        except Exception as exc:
            log.warning("reading new jobs failed: %s", exc)
            return set()
        found = {int(r["id"]) for r in rows}
        if found:
            self._max_id = max(self._max_id, *found)
        return found

    async def read(self, ids: list[int], tenant: str | None = None) -> list[State]:
        """Current job states with their latest runs."""
        rows = await self._pool.fetch(query("job_states"), ids, tenant)
        return [(r["job"], r["run"]) for r in rows]

    async def changed_since(
        self, tenant: str, since: float, queue: str | None, kind: str | None, limit: int
    ) -> list[State]:
        """States of a tenant's jobs changed after `since` (epoch seconds), oldest first."""
        from datetime import UTC, datetime

        rows = await self._pool.fetch(
            query("changed_since"), tenant, datetime.fromtimestamp(since, UTC), queue, kind, limit
        )
        states = {int(s[0]["id"]): s for s in await self.read([r["id"] for r in rows], tenant)}
        return [states[r["id"]] for r in rows if r["id"] in states]

    async def database_now(self) -> datetime:
        """The database's clock (streams mark when they opened with it)."""
        now: datetime = await self._pool.fetchval("SELECT now()")
        return now

    def _deliver(self, states: list[State], created: set[int]) -> None:
        """Hand states to the subscribers that show them; a state found only by the creation
        scan goes to streams opened before that job was enqueued."""
        for sub in list(self._subs):
            for state in states:
                if not sub.wants(state[0]):
                    continue
                if (
                    sub.opened_at is not None
                    and int(state[0]["id"]) in created
                    and datetime.fromisoformat(state[0]["enqueued_at"]) < sub.opened_at
                ):
                    continue
                try:
                    sub.inbox.put_nowait(state)
                except asyncio.QueueFull:
                    sub.dropped = True
                    self._metrics.sse_dropped.inc()
                    self.unsubscribe(sub)
                    with contextlib.suppress(Exception):
                        sub.resync.set()
                    break
