"""The worker: LISTEN wake-ups, one claim statement for all free slots, handlers as tasks (or in
a thread pool), batched outcomes, batched heartbeats, leader-only maintenance, graceful stop.
Every background component runs in one TaskGroup: if one crashes, the worker stops loudly."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import asyncpg

from foreman_rt import db
from foreman_rt.config import DEFAULT_SCHEMA, Channels, validate_schema
from foreman_rt.dberrors import is_transient, recover
from foreman_rt.demand import Demand
from foreman_rt.embedded import resolve_dsn
from foreman_rt.handlers import Handler, JobContext
from foreman_rt.notify import Listener
from foreman_rt.payloads import parse_cancel, parse_wake
from foreman_rt.registry import build
from foreman_rt.sql import query
from foreman_rt.worker.completer import Completer
from foreman_rt.worker.heartbeat import Beat, Heartbeat
from foreman_rt.worker.maintenance import Maintenance
from foreman_rt.worker.metrics import WorkerMetrics
from foreman_rt.worker.outcome import (
    Attempt,
    Discard,
    Failed,
    Outcome,
    StopReason,
    Succeeded,
    failed,
    succeeded,
)
from foreman_rt.worker.settings import WorkerSettings

log = logging.getLogger("foreman_rt.worker")

# The columns claim.sql returns, in order: Worker._start unpacks its rows by position.
CLAIM_COLUMNS = (
    "id",
    "kind",
    "queue",
    "tenant",
    "params",
    "attempt_count",
    "max_attempts",
    "backoff_base_seconds",
    "backoff_max_seconds",
    "run_id",
    "wait_seconds",
)

DEMAND_TTL = 10.0  # seconds a worker's wish for insert notifications lasts unless renewed
DEMAND_TICK = 1.0  # how often it is renewed, or dropped while every slot is busy


@dataclass(eq=False, slots=True)
class RunningJob:
    """One attempt in progress in this process."""

    ctx: JobContext
    handler: Handler
    params: Any
    backoff_base: float | None
    backoff_max: float | None
    started: float
    task: asyncio.Task[None] | None = None
    reason: StopReason | None = None
    done: bool = field(default=False)

    def attempt(self) -> Attempt:
        """The facts a failure decision needs (made only when the attempt fails)."""
        c = self.ctx
        return Attempt(c.run_id, c.attempt, c.max_attempts, self.backoff_base, self.backoff_max)


class Worker:
    """Runs handlers for claimed jobs until `stop()`; usable under the CLI or in any event loop."""

    def __init__(
        self,
        dsn: str | None = None,
        handlers: Mapping[str, Callable[..., Any] | Handler] | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        settings: WorkerSettings | None = None,
        metrics: WorkerMetrics | None = None,
        **options: Any,
    ) -> None:
        self._dsn = dsn
        self.schema = validate_schema(schema)
        self.settings = settings or WorkerSettings(**options)
        self.handlers = _as_handlers(handlers or {})
        self.metrics = metrics or WorkerMetrics()
        self.metrics.slots_total.set(self.settings.concurrency)
        self.metrics.slots_busy.set_function(lambda: len(self._running))  # read at scrape
        self._kinds = sorted(self.handlers)
        self._queue_set = None if self.settings.queues is None else frozenset(self.settings.queues)
        self._kind_set = frozenset(self._kinds)
        self._running: dict[int, RunningJob] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self.started = asyncio.Event()
        self._saturated = False
        self._next_due: float | None = None
        self._due_unknown = True
        self._executor: ThreadPoolExecutor | None = None
        self._pool: db.Pool | None = None
        self._completer: Completer | None = None
        self._heartbeat: Heartbeat | None = None
        self._listener: Listener | None = None
        self._demand: Demand | None = None
        self._settling: asyncio.Task[None] | None = None
        self._busy = False  # polling on a short period instead of asking for wake-ups
        self._wakes = 0  # wake-ups for this worker since the last demand tick
        self._claimed = 0  # jobs claimed since the last demand tick
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_task: asyncio.Task[None] | None = None

    @property
    def worker_id(self) -> str:
        """This process's worker id (recorded on every run it claims)."""
        return self.settings.worker_id

    @property
    def busy(self) -> int:
        """Attempts running now."""
        return len(self._running)

    def stop(self) -> None:
        """First call: stop claiming and drain; a second call: stop at once."""
        if self._stopping.is_set():
            self._hard_stop.set()
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Run until stopped; raises if a component fails."""
        if not self._kinds:
            log.warning("no handlers registered: this worker will claim nothing")
        dsn, _embedded = await asyncio.to_thread(resolve_dsn, self._dsn)
        self._loop = asyncio.get_running_loop()
        size = 6
        self._pool = await db.create_pool(
            dsn,
            self.schema,
            min_size=2,
            max_size=size,
            application_name="foreman-rt worker",
            reset_session=False,
            settings=db.WORKER_PLANNER,
        )
        self._executor = ThreadPoolExecutor(self.settings.concurrency, "foreman-rt-handler")
        try:
            async with self._pool.acquire() as conn:
                await db.check_schema(conn, self.schema)
            await self._run_components(dsn)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            await self._pool.close()

    async def _run_components(self, dsn: str) -> None:
        assert self._pool is not None
        s = self.settings
        completer = Completer(
            self._pool,
            self.metrics,
            interval=s.flush_interval,
            max_batch=s.flush_max,
            on_flushed=self._on_flushed,
        )
        heartbeat = Heartbeat(
            self._pool,
            self._contexts,
            self._on_beat,
            lease_seconds=s.lease_seconds,
            interval=s.heartbeat_interval,
            finished=completer.buffered_runs,
        )
        maintenance = Maintenance(self._pool, s, self.metrics)
        self._completer, self._heartbeat = completer, heartbeat
        background: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tg:
            if not s.poll_only:
                self._listener = self._make_listener(dsn)
                self._demand = Demand(self._pool, self.worker_id, s.queues, DEMAND_TTL)
                background.append(tg.create_task(self._listener.run(), name="listener"))
                background.append(tg.create_task(self._demand_loop(), name="demand"))
            background.append(tg.create_task(completer.run(), name="completer"))
            background.append(tg.create_task(heartbeat.run(), name="heartbeat"))
            background.append(tg.create_task(maintenance.run(), name="maintenance"))
            tg.create_task(self._main(background, completer, maintenance), name="claimer")

    def _make_listener(self, dsn: str) -> Listener:
        channels = Channels.for_schema(self.schema)
        return Listener(
            lambda: db.connect(dsn, self.schema, application_name="foreman-rt listener"),
            {channels.wake: self._on_wake, channels.cancel: self._on_cancel},
            on_connect=self._on_listener_connect,
            on_disconnect=lambda: self.metrics.listener_connected.set(0),
        )

    async def _main(
        self, background: list[asyncio.Task[None]], completer: Completer, maint: Maintenance
    ) -> None:
        log.info(
            "worker %s started: kinds=%s queues=%s concurrency=%d%s",
            self.worker_id,
            ",".join(self._kinds) or "-",
            ",".join(self.settings.queues or ("*",)),
            self.settings.concurrency,
            " (poll-only)" if self.settings.poll_only else "",
        )
        self.started.set()
        await self._claim_loop()
        await self._withdraw_demand()
        await self._drain(completer)
        # Stop electing before resigning: a tick after the resignation would take the role back.
        electing = [t for t in background if t.get_name() == "maintenance"]
        for task in electing:
            task.cancel()
        await asyncio.gather(*electing, return_exceptions=True)
        try:
            await maint.resign()
        except Exception as exc:
            log.warning("could not resign leadership: %s", exc)
        for task in background:
            task.cancel()
        log.info("worker %s stopped", self.worker_id)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the wait completes, and a task would live on.
                async with asyncio.timeout(self._idle_timeout()):
                    await self._wake.wait()
            except TimeoutError:
                self._due_unknown = True  # poll tick or due timer: re-plan after this claim
            self._wake.clear()
            if self._next_due is not None and self._next_due <= time.monotonic():
                self._next_due = None
            if self._stopping.is_set():
                return
            try:
                await self.claim_once()
                backoff = 0.05
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self._pool is not None:
                    await recover(exc, self._pool)
                log.warning("claim failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()

    def _idle_timeout(self) -> float:
        if self._busy:
            poll = self.settings.busy_poll_interval
        else:
            poll = self.settings.poll_interval * random.uniform(0.8, 1.2)
        if self._next_due is None:
            return poll
        return max(0.0, min(poll, self._next_due - time.monotonic()))

    async def claim_once(self) -> int:
        """Fill every free slot with one claim statement; returns how many jobs started."""
        assert self._pool is not None
        free = self.settings.concurrency - len(self._running) - self._unwritten_overflow()
        if free <= 0 or not self._kinds:
            self._saturated = free <= 0
            return 0
        rows = await self._pool.fetch(
            query("claim"),
            self.settings.queues and list(self.settings.queues),
            self._kinds,
            free,
            self.worker_id,
            self.settings.lease_seconds,
        )
        for row in rows:
            self._start(row)
        if rows:
            self._claimed += len(rows)
            self.metrics.claim_batch.observe(len(rows))
        self._saturated = len(rows) == free
        if not self._saturated:
            demand = self._demand
            if demand is not None and not demand.armed and not self._busy and self._listening():
                await self._arm()
            if self._due_unknown:
                await self._plan_next_due()
        return len(rows)

    # -- demand for insert notifications -----------------------------------------------------

    def _listening(self) -> bool:
        return self._listener is not None and self._listener.connected.is_set()

    async def _arm(self) -> None:
        """Free slots and no demand row: write it, then claim again at once (inserts that
        committed before the row was visible did not notify) and once more after the inserts
        then in flight have ended (they may have checked for demand just before)."""
        assert self._demand is not None
        in_flight = await self._demand.arm()
        self._due_unknown = True  # delayed jobs inserted while disarmed told nobody their due time
        self._wake.set()
        if in_flight and (self._settling is None or self._settling.done()):
            self._settling = asyncio.get_running_loop().create_task(
                self._settle(in_flight), name="demand-settle"
            )

    async def _settle(self, in_flight: list[int]) -> None:
        assert self._demand is not None
        try:
            await self._demand.settled(in_flight, self.settings.poll_interval)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.debug("waiting for in-flight inserts failed (%s); the poll covers them", exc)
            return
        if not self._stopping.is_set():
            self._wake.set()

    async def _demand_loop(self) -> None:
        """Renew the demand row while slots are free; drop it while every slot is busy (a
        finishing job makes the worker claim anyway, and a short claim arms it again), and
        while the worker polls because wake-ups come too fast (see _adapt)."""
        assert self._demand is not None
        renewed = tick = time.monotonic()
        while True:
            await asyncio.sleep(DEMAND_TICK)
            now = time.monotonic()
            elapsed, tick = max(now - tick, 1e-3), now
            wakes, claimed, self._wakes, self._claimed = self._wakes, self._claimed, 0, 0
            try:
                await self._adapt(wakes / elapsed, claimed / elapsed)
                if not self._demand.armed:
                    continue
                if len(self._running) >= self.settings.concurrency:
                    await self._demand.disarm()
                elif time.monotonic() - renewed >= DEMAND_TTL / 3:
                    await self._demand.renew()
                    renewed = time.monotonic()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._demand.forget()  # written again by the next short claim
                log.warning("renewing the wake demand failed (%s)", exc)

    async def _adapt(self, wake_rate: float, claim_rate: float) -> None:
        """Busy polling. Every insert that wakes a worker is a notifying commit, and notifying
        commits hold PostgreSQL's cluster-wide notify lock through their WAL flush, so a worker
        woken hundreds of times a second slows every producer down more than it gains. From
        `busy_wake_rate` wake-ups a second the worker drops its demand row (inserts stop
        notifying it) and claims every `busy_poll_interval` instead; below half that many
        claimed jobs a second it asks for wake-ups again (the arming then covers the inserts
        that did not notify)."""
        assert self._demand is not None
        limit = self.settings.busy_wake_rate
        if not self._busy and limit > 0 and wake_rate >= limit:
            self._busy = True
            self.metrics.busy_polling.set(1)
            poll = self.settings.busy_poll_interval
            log.info("%.0f wake-ups/s: polling every %.3f s instead", wake_rate, poll)
            self._wake.set()  # the claim loop's period changes now
            await self._demand.disarm()
        elif self._busy and (limit <= 0 or claim_rate < limit / 2):
            self._busy = False
            self.metrics.busy_polling.set(0)
            log.info("%.0f jobs/s claimed: back to wake-ups", claim_rate)
            self._wake.set()  # claim now: a short claim arms again

    async def _withdraw_demand(self) -> None:
        """Stopping: inserts need not wake this worker any more."""
        if self._settling is not None:
            self._settling.cancel()
        if self._demand is None:
            return
        try:
            await self._demand.disarm()
        except Exception as exc:
            log.warning("could not withdraw the wake demand: %s (it expires by itself)", exc)

    def _unwritten_overflow(self) -> int:
        """Backpressure: finished jobs whose outcome is not yet written take up slots once there
        are more of them than a full flush batch (or the slots, if more), so a database slower
        to write than to claim cannot grow the buffer (and the memory) without bound, while
        completions still go out in full batches."""
        if self._completer is None:
            return 0
        allowed = max(self.settings.concurrency, self.settings.flush_max)
        return max(0, self._completer.pending - allowed)

    async def _plan_next_due(self) -> None:
        """Ask the database when the next delayed job falls due. Needed only when that is
        unknown: at start, after a reconnect or an overflow, on poll ticks, after retries;
        insert notifications carry the due times of new delayed jobs."""
        assert self._pool is not None
        self._due_unknown = False
        seconds = await self._pool.fetchval(
            query("next_due"), self.settings.queues and list(self.settings.queues), self._kinds
        )
        self._next_due = None if seconds is None else time.monotonic() + max(seconds, 0) + 0.002

    def _expect_due(self, seconds: float) -> None:
        """A job this worker could run falls due in `seconds`: make sure the timer fires."""
        due = time.monotonic() + max(seconds, 0.0) + 0.002
        if self._next_due is None or due < self._next_due:
            self._next_due = due
            self._wake.set()  # the claim loop recomputes its timeout

    def _start(self, row: asyncpg.Record) -> None:
        assert self._loop is not None
        # One unpack instead of a lookup by name per column, in CLAIM_COLUMNS order.
        (job_id, kind, queue, tenant, params, attempt, max_attempts,
         backoff_base, backoff_max, run_id, wait_seconds) = row  # fmt: skip
        ctx = JobContext(
            job_id=job_id,
            run_id=run_id,
            kind=kind,
            queue=queue,
            tenant=tenant,
            attempt=attempt,
            max_attempts=max_attempts,
            _on_progress=self._on_progress,
        )
        rj = RunningJob(
            ctx, self.handlers[kind], params, backoff_base, backoff_max, time.perf_counter()
        )
        self._running[run_id] = rj
        self.metrics.claim_wait_of(kind).observe(max(wait_seconds, 0.0))
        rj.task = self._loop.create_task(self._execute(rj), name=f"job-{job_id}")

    def _on_progress(self, _ctx: JobContext) -> None:
        """A handler reported progress (from any thread): heartbeat early."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._progress_reported)

    # -- executing ----------------------------------------------------------------------------

    async def _execute(self, rj: RunningJob) -> None:
        outcome: Outcome
        retry = self.settings.retry
        try:
            result = await rj.handler.invoke(rj.params, rj.ctx, self._executor)
            outcome = succeeded(rj.ctx.run_id, result)
        except asyncio.CancelledError as exc:
            outcome = failed(rj.attempt(), exc, rj.reason or StopReason.SHUTDOWN, retry)
        except Exception as exc:
            outcome = failed(rj.attempt(), exc, rj.reason, retry)
        if rj.reason is StopReason.LEASE_LOST:
            outcome = failed(rj.attempt(), RuntimeError("lease lost"), rj.reason, retry)
        self._finish(rj, outcome)

    def _finish(self, rj: RunningJob, outcome: Outcome) -> None:
        rj.done = True
        ctx = rj.ctx
        if isinstance(outcome, Succeeded) and ctx.progress_dirty:  # not yet heartbeated
            progress = (ctx.progress_current, ctx.progress_total, ctx.progress_message)
            outcome = replace(outcome, progress=progress)
        self._running.pop(ctx.run_id, None)
        assert self._completer is not None
        self._completer.add(outcome)
        count, duration = self.metrics.finished_of(ctx.kind, _OUTCOME_LABEL[type(outcome)])
        count.inc()
        duration.observe(time.perf_counter() - rj.started)
        if self._saturated and not self._stopping.is_set():
            self._wake.set()

    def _on_flushed(self, retried: bool) -> None:
        """Outcomes were written. Retries become due later with no NOTIFY: claim (nothing yet)
        and so re-plan the timer to the earliest due job."""
        if self._stopping.is_set():
            return
        if retried:
            self._due_unknown = True
            self._wake.set()
        elif self._saturated:
            self._wake.set()  # slots held by unwritten outcomes may be free now

    def _interrupt(self, rj: RunningJob, reason: StopReason) -> None:
        if rj.done or rj.reason is not None:
            return
        rj.reason = reason
        rj.ctx.cancel_event.set()
        if rj.handler.is_async or reason is not StopReason.CANCEL:
            assert rj.task is not None
            rj.task.cancel()
        log.info("job %s run %s interrupted: %s", rj.ctx.job_id, rj.ctx.run_id, reason.value)

    def _contexts(self) -> list[JobContext]:
        """The running attempts' leases to renew. Finished ones whose outcome still waits to
        be written (the database may be away) are renewed too, by run id: the heartbeat asks
        the completer for those, so their lease does not lapse meanwhile."""
        return [rj.ctx for rj in self._running.values() if not rj.done]

    # -- notifications --------------------------------------------------------------------

    def _on_wake(self, payload: str) -> None:
        wake = parse_wake(payload)
        if not wake.concerns(self._queue_set, self._kind_set):
            return
        self._wakes += 1
        if wake.everything:
            self._due_unknown = True  # overflow or a reaper requeue: due times unknown
        due = wake.earliest_due(self._queue_set, self._kind_set)
        if due is not None:
            self._expect_due(due)
        if len(self._running) < self.settings.concurrency:
            self._wake.set()
        else:
            self._saturated = True

    def _on_cancel(self, payload: str) -> None:
        ids = parse_cancel(payload)
        if ids is None:
            if self._heartbeat is not None and self._running:
                self._heartbeat.soon()
            return
        for rj in list(self._running.values()):
            if rj.ctx.job_id in ids:
                self._interrupt(rj, StopReason.CANCEL)

    def _on_listener_connect(self) -> None:
        self.metrics.listener_connected.set(1)
        if self._demand is not None:
            self._demand.forget()  # a restarted database has lost the unlogged demand rows
        self._due_unknown = True
        self._wake.set()  # notifications may have been missed while disconnected

    def _on_beat(self, beat: Beat) -> None:
        for run_id in beat.lost:
            rj = self._running.get(run_id)
            if rj is not None:
                self.metrics.lease_lost.inc()
                log.warning("job %s run %s lost its lease", rj.ctx.job_id, run_id)
                self._interrupt(rj, StopReason.LEASE_LOST)
        for run_id in beat.cancel:
            rj = self._running.get(run_id)
            if rj is not None:
                self._interrupt(rj, StopReason.CANCEL)

    def _progress_reported(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.soon()

    # -- stopping ---------------------------------------------------------------------------

    async def _drain(self, completer: Completer) -> None:
        running = {rj.task for rj in self._running.values() if rj.task is not None}
        if running:
            log.info(
                "stopping: waiting up to %.0fs for %d running jobs",
                self.settings.shutdown_timeout,
                len(running),
            )
            await self._wait_running(running)
        for rj in list(self._running.values()):
            self._interrupt(rj, StopReason.SHUTDOWN)
        leftover = [rj.task for rj in self._running.values() if rj.task is not None]
        if leftover:
            await asyncio.wait(leftover, timeout=5.0)
        if not await completer.drain(timeout=10.0):
            log.error(
                "could not write %d outcomes before stopping; their leases will expire "
                "and the reaper will retry them",
                completer.pending,
            )

    async def _wait_running(self, running: set[asyncio.Task[None]]) -> None:
        """Wait for running jobs until they finish, the timeout passes, or a hard stop."""
        hard = asyncio.ensure_future(self._hard_stop.wait())
        deadline = time.monotonic() + self.settings.shutdown_timeout
        waiting: set[asyncio.Future[Any]] = {*running, hard}
        try:
            while len(waiting) > 1 and not hard.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                _done, waiting = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                waiting.add(hard)
        finally:
            hard.cancel()

    async def __aenter__(self) -> Worker:
        self._run_task = asyncio.get_running_loop().create_task(self.run())
        started = asyncio.ensure_future(self.started.wait())
        await asyncio.wait([started, self._run_task], return_when=asyncio.FIRST_COMPLETED)
        if self._run_task.done():
            started.cancel()
            self._run_task.result()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._run_task is not None:
            await self._run_task


_OUTCOME_LABEL: dict[type, str] = {Succeeded: "succeeded", Failed: "failed", Discard: "discard"}


def _as_handlers(handlers: Mapping[str, Callable[..., Any] | Handler]) -> dict[str, Handler]:
    plain = {k: v for k, v in handlers.items() if not isinstance(v, Handler)}
    wrapped = {k: v for k, v in handlers.items() if isinstance(v, Handler)}
    return {**build(plain), **wrapped}
