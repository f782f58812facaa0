"""The async client: enqueue (single, bulk, inside the caller's transaction), get, list, runs,
cancel, retry and wait."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import asyncpg

from foreman_rt import db
from foreman_rt.config import DEFAULT_SCHEMA, Channels, validate_schema
from foreman_rt.dberrors import is_transient, recover, retry_at_once, translate
from foreman_rt.demand import Demand
from foreman_rt.embedded import resolve_dsn
from foreman_rt.errors import InvalidInput, NotFound, Timeout
from foreman_rt.jobs import (
    DEFAULT_MAX_ATTEMPTS,
    EnqueueResult,
    Job,
    JobSpec,
    JobStatus,
    Run,
    parse_id,
    validate_int,
)
from foreman_rt.lane import Lane
from foreman_rt.notify import Listener
from foreman_rt.payloads import parse_events
from foreman_rt.sql import query, query_in

LIST_LIMIT_MAX = 1000
WAIT_DEMAND_TTL = 30.0  # seconds a waiting client's wish for state-change events lasts unrenewed

log = logging.getLogger("foreman_rt.client")


def _until(deadline: float | None, cap: float) -> float:
    """Seconds left before `deadline` (monotonic), at most `cap` and never negative."""
    return cap if deadline is None else max(0.0, min(cap, deadline - time.monotonic()))


@dataclass(frozen=True, slots=True)
class Enqueued:
    """One row of a bulk enqueue: the job id and whether this call created it."""

    id: int
    created: bool


@dataclass(frozen=True, slots=True)
class Page:
    """One page of jobs, newest first; pass `next_cursor` to get the next page."""

    jobs: builtins.list[Job]
    next_cursor: str | None


def _spec_args(spec: JobSpec) -> tuple[Any, ...]:
    delay = None if spec.delay is None else spec.delay.total_seconds()
    return (
        spec.kind,
        spec.params_json,
        spec.queue,
        spec.priority,
        spec.scheduled_at,
        spec.max_attempts,
        spec.idempotency_key,
        spec.tenant,
        spec.service,
        spec.backoff_base_seconds,
        spec.backoff_max_seconds,
        delay,
    )


def _as_spec(item: JobSpec | Mapping[str, Any]) -> JobSpec:
    if isinstance(item, JobSpec):
        return item
    if not isinstance(item, Mapping) or "kind" not in item:
        raise InvalidInput("each bulk item must be a JobSpec or a mapping with a 'kind'")
    fields = dict(item)
    return JobSpec.build(fields.pop("kind"), fields.pop("params", None), **fields)


class _Watch:
    """Wakes `wait()` callers when their job changes, from one LISTEN connection. While anyone
    waits it holds a wake_demand row with `events`, since state changes notify only then."""

    def __init__(self, pool: db.Pool, dsn: str, schema: str) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._demand = Demand(
            pool, f"wait:{uuid.uuid4().hex[:12]}", (), WAIT_DEMAND_TTL, events=True
        )
        self._changed = asyncio.Event()  # waiters came or went, or the listener reconnected
        self.ready = asyncio.Event()  # the row is live; changes that raced its arming ended
        self.listener = Listener(
            lambda: db.connect(dsn, schema, application_name="foreman-rt wait"),
            {Channels.for_schema(schema).events: self._on_events},
            on_connect=self._on_connect,
            log_level=logging.DEBUG,
        )
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.listener.run()), loop.create_task(self._keep())]

    def register(self, job_id: int, event: asyncio.Event) -> None:
        self._waiters.setdefault(job_id, set()).add(event)
        if not self._demand.armed:
            self._changed.set()

    def unregister(self, job_id: int, event: asyncio.Event) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[job_id]
        if not self._waiters:
            self._changed.set()

    def _on_events(self, payload: str) -> None:
        events = parse_events(payload)
        if events.overflow:
            self._wake_all()
            return
        for job_id in events.ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    def _on_connect(self) -> None:
        self._lost()  # a restarted database has lost the unlogged row
        self._wake_all()

    def _lost(self) -> None:
        self._demand.forget()
        self.ready.clear()
        self._changed.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _keep(self) -> None:
        """Hold the row while anyone waits: arm, wait out the state changes that raced the
        arming, then wake every waiter to read its job again; renew; drop it when idle."""
        while True:
            try:
                await self._tick()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.debug("wait: updating the wake demand failed (%s)", exc)
                self._lost()
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT_DEMAND_TTL / 3):
                    await self._changed.wait()
            self._changed.clear()

    async def _tick(self) -> None:
        if not self._waiters:
            self.ready.clear()
            await self._demand.disarm()
        elif self._demand.armed:
            await self._demand.renew()
        else:
            in_flight = await self._demand.arm()
            await self._demand.settled(in_flight, 1.0)
            if self._demand.armed:
                self.ready.set()
                self._wake_all()
            else:  # lost meanwhile: arm once more
                self._changed.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._demand.disarm()


class Client:
    """Talks to one foreman-rt schema: its own statements run on connections of its own (a
    `Lane`, opened on demand, at most the pool's size); `pool` is for callers' transactions."""

    def __init__(self, pool: db.Pool, *, dsn: str, schema: str, embedded: bool = False) -> None:
        self.pool = pool
        self.dsn = dsn
        self.schema = schema
        self.embedded = embedded
        self._watch: _Watch | None = None
        self._lane = Lane(lambda: db.connect(dsn, schema), pool.get_max_size())

    @classmethod
    async def connect(
        cls,
        dsn: str | None = None,
        schema: str = DEFAULT_SCHEMA,
        *,
        min_size: int = 1,
        max_size: int = 10,
        check: bool = True,
        reset_session: bool = True,
    ) -> Client:
        """Connect to `dsn` (None: FOREMAN_DSN, DATABASE_URL, else the embedded default)."""
        validate_schema(schema)
        resolved, embedded = await asyncio.to_thread(resolve_dsn, dsn)
        pool = await db.create_pool(
            resolved, schema, min_size=min_size, max_size=max_size, reset_session=reset_session
        )
        if check:
            try:
                async with pool.acquire() as conn:
                    await db.check_schema(conn, schema)
            except BaseException:
                await pool.close()
                raise
        return cls(pool, dsn=resolved, schema=schema, embedded=embedded)

    async def close(self) -> None:
        """Close the pool and any wait listener."""
        if self._watch is not None:
            await self._watch.close()
            self._watch = None
        await self._lane.close()
        await self.pool.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def enqueue(
        self,
        kind: str,
        params: Any = None,
        *,
        queue: str = "default",
        priority: int = 0,
        scheduled_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        idempotency_key: str | None = None,
        tenant: str = "default",
        service: str | None = None,
        backoff: tuple[float, float] | None = None,
        connection: asyncpg.Connection | None = None,
    ) -> EnqueueResult:
        """Enqueue one job; a duplicate idempotency key returns the existing job (created=False).
        With `connection=`, it commits (and wakes workers) only with the caller's transaction."""
        spec = JobSpec.build(
            kind,
            params,
            queue=queue,
            priority=priority,
            scheduled_at=scheduled_at,
            delay=delay,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            tenant=tenant,
            service=service,
            backoff=backoff,
        )
        return await self.enqueue_spec(spec, connection=connection)

    async def enqueue_spec(
        self, spec: JobSpec, *, connection: asyncpg.Connection | None = None
    ) -> EnqueueResult:
        """Enqueue a pre-validated JobSpec."""
        name = "enqueue" if spec.idempotency_key is not None else "enqueue_new"
        sql = query_in(name, self.schema)
        row = await self._fetchrow(sql, *_spec_args(spec), connection=connection)
        assert row is not None
        data = dict(row)
        data["params"] = json.loads(data["params"])
        data["result"] = None if data["result"] is None else json.loads(data["result"])
        return EnqueueResult(job=Job.from_row(data), created=data["created"])

    async def enqueue_many(
        self,
        jobs: Iterable[JobSpec | Mapping[str, Any]],
        *,
        connection: asyncpg.Connection | None = None,
    ) -> builtins.list[Enqueued]:
        """Enqueue many jobs in one statement; results come back in input order."""
        specs = [_as_spec(item) for item in jobs]
        if not specs:
            return []
        columns = list(zip(*(_spec_args(s) for s in specs), strict=True))
        sql = query_in("enqueue_many", self.schema)
        rows = await self._fetch(sql, *columns, connection=connection)
        out = []
        for spec, row in zip(specs, rows, strict=True):
            if row["id"] is None:  # a concurrent duplicate committed after our snapshot
                res = await self.enqueue_spec(spec, connection=connection)
                out.append(Enqueued(res.job.id, res.created))
            else:
                out.append(Enqueued(row["id"], row["created"]))
        return out

    async def get(self, job_id: int | str, *, tenant: str | None = None) -> Job:
        """One job; NotFound if it does not exist (or is another tenant's)."""
        row = await self._fetchrow(query("get_job"), parse_id(job_id), tenant)
        if row is None:
            raise NotFound(f"job {job_id} not found", code="job_not_found")
        return Job.from_row(row)

    async def list(
        self,
        *,
        status: str | JobStatus | None = None,
        kind: str | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        service: str | None = None,
        limit: int = 50,
        cursor: int | str | None = None,
    ) -> Page:
        """Jobs newest first, filtered; keyset pagination through `cursor`."""
        if status is not None and status not in JobStatus.__members__.values():
            choices = ", ".join(s.value for s in JobStatus)
            raise InvalidInput(f"status must be one of {choices}", code="invalid_status")
        validate_int("limit", limit, 1, LIST_LIMIT_MAX)
        after = None if cursor is None else parse_id(cursor, "cursor")
        rows = await self._fetch(
            query("list_jobs"),
            None if status is None else str(status),
            kind,
            queue,
            tenant,
            service,
            after,
            limit,
        )
        jobs = [Job.from_row(r) for r in rows]
        next_cursor = str(jobs[-1].id) if len(jobs) == limit else None
        return Page(jobs=jobs, next_cursor=next_cursor)

    async def runs(self, job_id: int | str, *, tenant: str | None = None) -> builtins.list[Run]:
        """Every attempt of a job, oldest first; NotFound for an unknown job."""
        job = await self.get(job_id, tenant=tenant)
        rows = await self._fetch(query("job_runs"), job.id)
        return [Run.from_row(r) for r in rows]

    async def cancel(self, job_id: int | str, *, tenant: str | None = None) -> Job:
        """Cancel: pending → cancelled at once; running → cancel_requested; terminal: unchanged."""
        row = await self._fetchrow(query("cancel_job"), parse_id(job_id), tenant)
        if row is None:
            return await self.get(job_id, tenant=tenant)
        return Job.from_row(row)

    async def retry(self, job_id: int | str, *, tenant: str | None = None) -> Job:
        """Put a failed or cancelled job back to pending; InvalidInput for other states."""
        row = await self._fetchrow(query("retry_job"), parse_id(job_id), tenant)
        if row is None:
            job = await self.get(job_id, tenant=tenant)
            raise InvalidInput(
                f"job {job.id} is {job.status.value}; only failed or cancelled jobs can be retried",
                code="invalid_state",
            )
        return Job.from_row(row)

    async def wait(
        self, job_id: int | str, timeout: float | None = None, *, tenant: str | None = None
    ) -> Job:
        """Wait until the job is terminal, woken by notifications; Timeout after `timeout` s."""
        ident = parse_id(job_id)
        if self._watch is None:
            self._watch = _Watch(self.pool, self.dsn, self.schema)
        deadline = None if timeout is None else time.monotonic() + timeout
        event = asyncio.Event()
        self._watch.register(ident, event)
        try:
            await self._watch.listener.wait_connected(timeout)
            while True:
                event.clear()
                if not self._watch.ready.is_set():  # until then changes may not notify
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_until(deadline, 5.0)):
                            await self._watch.ready.wait()
                job = await self.get(ident, tenant=tenant)
                if job.status.terminal:
                    return job
                remaining = 5.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(
                        f"job {ident} is still {job.status.value} after {timeout} s",
                        job=job.to_json(),
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 5.0)):
                        await event.wait()
        except TimeoutError:
            raise Timeout(f"job {ident} did not finish within {timeout} s") from None
        finally:
            self._watch.unregister(ident, event)

    async def _fetch(
        self, sql: str, *args: Any, connection: asyncpg.Connection | None = None
    ) -> builtins.list[asyncpg.Record]:
        if connection is not None:  # the caller's transaction: its errors are the caller's
            return await connection.fetch(sql, *args)
        for attempt in range(3):
            try:
                return await self._lane.fetch(sql, *args)
            except Exception as exc:
                if attempt < 2 and retry_at_once(exc):
                    continue  # rolled back by the server: the same statement again is safe
                await recover(exc, self._lane, self.pool)
                error = translate(exc)
                if error is None:
                    raise
                raise error from exc
        raise AssertionError("unreachable")

    async def _fetchrow(
        self, sql: str, *args: Any, connection: asyncpg.Connection | None = None
    ) -> asyncpg.Record | None:
        rows = await self._fetch(sql, *args, connection=connection)
        return rows[0] if rows else None
