"""The worker process's own Prometheus metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_RUN = (0.001, 0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 1800, 7200)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class WorkerMetrics:
    """Counters, gauges and histograms of one worker, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.slots_busy = Gauge("foreman_worker_slots_busy", "Handler slots in use.", registry=r)
        self.slots_total = Gauge("foreman_worker_slots", "Handler slots (concurrency).", registry=r)
        self.listener_connected = Gauge(
            "foreman_worker_listener_connected", "1 while the LISTEN connection is up.", registry=r
        )
        self.claim_batch = Histogram(
            "foreman_worker_claim_batch_size",
            "Jobs per claim statement.",
            buckets=_BATCH,
            registry=r,
        )
        self.flush_batch = Histogram(
            "foreman_worker_flush_batch_size", "Outcomes per flush.", buckets=_BATCH, registry=r
        )
        self.flush_seconds = Histogram(
            "foreman_worker_flush_seconds",
            "Time to write one batch of outcomes.",
            buckets=_FAST,
            registry=r,
        )
        self.claim_wait = Histogram(
            "foreman_worker_claim_wait_seconds",
            "Enqueue (or due time) to claim.",
            ["kind"],
            buckets=_FAST,
            registry=r,
        )
        self.run_duration = Histogram(
            "foreman_worker_run_duration_seconds",
            "Handler run time.",
            ["kind", "outcome"],
            buckets=_RUN,
            registry=r,
        )
        self.outcomes = Counter(
            "foreman_worker_jobs", "Finished attempts by outcome.", ["kind", "outcome"], registry=r
        )
        self.late = Counter(
            "foreman_worker_late_outcomes",
            "Outcomes rejected because the attempt no longer held its lease.",
            registry=r,
        )
        self.lease_lost = Counter(
            "foreman_worker_leases_lost", "Running attempts whose lease was lost.", registry=r
        )
        self.reaped = Counter(
            "foreman_reaper_reaped", "Expired leases reaped (leader only).", registry=r
        )
        self.retention_deleted = Counter(
            "foreman_retention_deleted", "Terminal jobs deleted by retention.", registry=r
        )
        self._claim_wait_children: dict[str, Histogram] = {}
        self._finished_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def claim_wait_of(self, kind: str) -> Histogram:
        """The claim-wait histogram of one kind, its labelled child cached (labels() costs
        more than the observation itself on the per-job path)."""
        child = self._claim_wait_children.get(kind)
        if child is None:
            child = self._claim_wait_children[kind] = self.claim_wait.labels(kind)
        return child

    def finished_of(self, kind: str, outcome: str) -> tuple[Counter, Histogram]:
        """The outcome counter and run-duration histogram of one (kind, outcome), cached."""
        key = (kind, outcome)
        pair = self._finished_children.get(key)
        if pair is None:
            pair = (self.outcomes.labels(kind, outcome), self.run_duration.labels(kind, outcome))
            self._finished_children[key] = pair
        return pair
