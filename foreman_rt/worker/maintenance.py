"""Leader-only housekeeping: one process per schema holds the `maintenance` leader row (with
expiry, so a dead leader is replaced) and runs the reaper, retention, and the fold of the
per-statement enqueue counts into their running totals (so that table stays small)."""

from __future__ import annotations

import asyncio
import logging
import time

from foreman_rt.db import Pool
from foreman_rt.dberrors import is_transient, recover
from foreman_rt.sql import query
from foreman_rt.worker.metrics import WorkerMetrics
from foreman_rt.worker.settings import WorkerSettings

log = logging.getLogger("foreman_rt.worker.maintenance")

ROLE = "maintenance"
RETENTION_BATCH = 1000
FOLD_INTERVAL = 10.0  # seconds between folds of the per-statement enqueue counts


class Maintenance:
    """Leader election, reaping of expired leases, and retention."""

    def __init__(self, pool: Pool, settings: WorkerSettings, metrics: WorkerMetrics) -> None:
        self._pool = pool
        self._s = settings
        self._metrics = metrics
        self.is_leader = False
        self._next_retention = 0.0
        self._next_fold = 0.0

    async def run(self) -> None:
        """Renew (or try to take) leadership and, while leader, reap and prune."""
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await recover(exc, self._pool)
                log.warning("maintenance failed (%s); retrying", exc)
            await asyncio.sleep(min(self._s.reap_interval, self._s.leader_ttl / 3))

    async def run_once(self) -> None:
        """One tick: elect, then reap and (when due) apply retention."""
        leader = await self.elect()
        if not leader:
            return
        await self.reap()
        if time.monotonic() >= self._next_fold:
            await self._pool.execute(query("enqueue_totals"))
            self._next_fold = time.monotonic() + FOLD_INTERVAL
        if self._s.retention_days and time.monotonic() >= self._next_retention:
            await self.prune()
            self._next_retention = time.monotonic() + self._s.retention_interval

    async def elect(self) -> bool:
        """Take or renew the leader row; True while this process leads."""
        holder = await self._pool.fetchval(
            query("lead"), ROLE, self._s.worker_id, self._s.leader_ttl
        )
        leader = holder is not None
        if leader != self.is_leader:
            log.info("%s maintenance leadership", "took" if leader else "lost")
        self.is_leader = leader
        return leader

    async def reap(self) -> int:
        """Return expired leases to pending (or failed/cancelled); how many were reaped."""
        rows = await self._pool.fetch(
            query("reap"),
            self._s.reap_batch,
            self._s.retry.base_seconds,
            self._s.retry.max_seconds,
        )
        if any(r["status"] == "pending" for r in rows):
            # Requeued jobs are due after a backoff: wake idle workers so they set their timers.
            await self._pool.execute("SELECT pg_notify(current_schema() || '_wake', '\"*\"')")
        if rows:
            self._metrics.reaped.inc(len(rows))
            log.warning(
                "reaped %d expired leases: %s",
                len(rows),
                ", ".join(f"{r['id']}→{r['status']}" for r in rows[:20]),
            )
        return len(rows)

    async def prune(self) -> int:
        """Delete terminal jobs older than the retention period, in batches."""
        total = 0
        while True:
            status = await self._pool.execute(
                query("retention"), self._s.retention_days, RETENTION_BATCH
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < RETENTION_BATCH:
                break
        if total:
            self._metrics.retention_deleted.inc(total)
            log.info("retention deleted %d terminal jobs", total)
        return total

    async def resign(self) -> None:
        """Give up leadership so another process takes over at once (also when an election this
        process won was interrupted before it learnt the result)."""
        await self._pool.execute(query("resign"), ROLE, self._s.worker_id)
        self.is_leader = False
