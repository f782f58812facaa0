"""The service's Prometheus metrics: counters and histograms fed by the notifications, gauges
read from SQL at scrape time (cached about a second). Enqueue counts come from the database's
running totals, since inserts notify only while someone waits for them. Names follow the
reference design."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from foreman_rt.db import Pool
from foreman_rt.jobs import JobStatus, RunStatus
from foreman_rt.payloads import Events
from foreman_rt.sql import query

_LIFETIME = (0.05, 0.25, 1, 5, 15, 60, 300, 1800, 7200)
_WAIT = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 15, 60, 300, 1800)
GAUGE_CACHE_SECONDS = 1.0


class ServiceMetrics:
    """All metrics of `foreman-rt api`, in their own registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.enqueued = Counter(
            "foreman_jobs_enqueued", "Jobs inserted.", ["kind", "queue"], registry=r
        )
        self.claimed = Counter(
            "foreman_jobs_claimed", "Attempts started.", ["kind", "queue"], registry=r
        )
        self.retried = Counter(
            "foreman_jobs_retried",
            "Running jobs put back to pending (retry, expired lease).",
            ["kind", "queue"],
            registry=r,
        )
        self.terminal = Counter(
            "foreman_jobs_terminal",
            "Jobs reaching a terminal state.",
            ["kind", "queue", "status"],
            registry=r,
        )
        self.claim_wait = Histogram(
            "foreman_claim_wait_seconds",
            "Enqueue to start of the first attempt.",
            ["kind"],
            buckets=_WAIT,
            registry=r,
        )
        self.run_duration = Histogram(
            "foreman_run_duration_seconds",
            "Start to end of an attempt.",
            ["kind", "status"],
            buckets=_LIFETIME,
            registry=r,
        )
        self.job_lifetime = Histogram(
            "foreman_job_lifetime_seconds",
            "Enqueue to terminal state.",
            ["kind", "status"],
            buckets=_LIFETIME,
            registry=r,
        )
        self.overflows = Counter(
            "foreman_notification_overflows",
            "Notifications that overflowed (listeners resynced).",
            registry=r,
        )
        self.listener_connected = Gauge(
            "foreman_listener_connected",
            "1 while the service's LISTEN connection is up.",
            registry=r,
        )
        self.sse_clients = Gauge("foreman_sse_clients", "Open SSE streams.", registry=r)
        self.sse_dropped = Counter(
            "foreman_sse_dropped", "SSE clients dropped for being slow.", registry=r
        )
        self.jobs_count = Gauge("foreman_jobs_count", "Jobs by status.", ["status"], registry=r)
        self.runs_count = Gauge("foreman_runs_count", "Runs by status.", ["status"], registry=r)
        self.oldest_pending = Gauge(
            "foreman_oldest_pending_age_seconds",
            "Age of the oldest ready pending job.",
            ["queue"],
            registry=r,
        )
        self.overdue_lease = Gauge(
            "foreman_overdue_lease_age_seconds",
            "How far the most overdue lease is past its deadline.",
            registry=r,
        )
        self.dead_tuples = Gauge(
            "foreman_dead_tuples", "Dead tuples of the hot tables.", ["table"], registry=r
        )
        self.notify_usage = Gauge(
            "foreman_notification_queue_usage", "pg_notification_queue_usage().", registry=r
        )
        self._gauges_at = 0.0
        self._enqueued_seen: dict[tuple[str, str], int] = {}
        self._lock = asyncio.Lock()

    def on_events(self, events: Events) -> None:
        """Count state changes."""
        if events.overflow:
            self.overflows.inc()
        for kind, queue, status, n in events.counts:
            if status == JobStatus.RUNNING:
                self.claimed.labels(kind, queue).inc(n)
            elif status == JobStatus.PENDING:
                self.retried.labels(kind, queue).inc(n)
            else:
                self.terminal.labels(kind, queue, status).inc(n)

    def on_states(self, states: Iterable[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """Observe latencies from freshly read job states."""
        for job, run in states:
            if run is None:
                continue
            kind, status = job["kind"], job["status"]
            if status == JobStatus.RUNNING and run["attempt"] == 1:
                self.claim_wait.labels(kind).observe(
                    _seconds(job["enqueued_at"], run["started_at"])
                )
            elif status in ("succeeded", "failed", "cancelled") and run["finished_at"]:
                self.run_duration.labels(kind, run["status"]).observe(
                    _seconds(run["started_at"], run["finished_at"])
                )
                self.job_lifetime.labels(kind, status).observe(
                    _seconds(job["enqueued_at"], job["completed_at"])
                )

    async def refresh_gauges(self, pool: Pool) -> None:
        """Read the SQL gauges, at most once per GAUGE_CACHE_SECONDS."""
        async with self._lock:
            if time.monotonic() - self._gauges_at < GAUGE_CACHE_SECONDS:
                return
            row = await asyncio.wait_for(pool.fetchrow(query("metrics_gauges")), 2.0)
            assert row is not None
            jobs, runs = json.loads(row["jobs"]), json.loads(row["runs"])
            for s in JobStatus:
                self.jobs_count.labels(s.value).set(jobs.get(s.value, 0))
            for rs in RunStatus:
                self.runs_count.labels(rs.value).set(runs.get(rs.value, 0))
            self.oldest_pending.clear()
            for queue, age in json.loads(row["oldest"]).items():
                self.oldest_pending.labels(queue).set(age)
            self.overdue_lease.set(row["overdue"])
            for table, n in json.loads(row["dead"]).items():
                self.dead_tuples.labels(table).set(n)
            self.notify_usage.set(row["notify_usage"])
            totals = await asyncio.wait_for(pool.fetch(query("enqueue_totals")), 2.0)
            self._count_enqueued({(r["kind"], r["queue"]): r["total"] for r in totals})
            self._gauges_at = time.monotonic()

    def _count_enqueued(self, totals: dict[tuple[str, str], int]) -> None:
        """Advance the enqueue counters to the database's running totals."""
        for (kind, queue), total in totals.items():
            seen = self._enqueued_seen.get((kind, queue), 0)
            if total > seen:
                self.enqueued.labels(kind, queue).inc(total - seen)
            self._enqueued_seen[(kind, queue)] = total


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
