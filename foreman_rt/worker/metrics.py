"""The worker process's own Prometheus metrics (docs/metrics.md)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_RUN = (0.001, 0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 1800, 7200)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Tally:
    """A histogram's bucket counts and sum, or a counter (no bounds), kept without locks.

    Per-job metrics are written only by the event loop's thread, so prometheus_client's
    per-value locks bought nothing there and cost about a tenth of a worker's CPU on no-op
    jobs (five locked increments per job). A scrape reads the numbers as they are."""

    __slots__ = ("bounds", "counts", "n", "sum")

    def __init__(self, bounds: tuple[float, ...] = ()) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose upper bound is at least `value`."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def inc(self, amount: int = 1) -> None:
        """Add to the counter."""
        self.n += amount

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, +Inf last, as the exposition format wants them."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((_le(bound), float(total)))
        return out


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _PerJob(Collector):
    """Exposes the lock-free per-job tallies as the worker's histograms and counter."""

    def __init__(self) -> None:
        self.claim_wait: dict[str, Tally] = {}
        self.finished: dict[tuple[str, str], tuple[Tally, Tally]] = {}

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        wait = HistogramMetricFamily(
            "foreman_worker_claim_wait_seconds", "Enqueue (or due time) to claim.", labels=["kind"]
        )
        for kind, t in list(self.claim_wait.items()):
            wait.add_metric([kind], t.buckets(), t.sum)
        duration = HistogramMetricFamily(
            "foreman_worker_run_duration_seconds", "Handler run time.", labels=["kind", "outcome"]
        )
        jobs = CounterMetricFamily(
            "foreman_worker_jobs", "Finished attempts by outcome.", labels=["kind", "outcome"]
        )
        for (kind, outcome), (count, runs) in list(self.finished.items()):
            duration.add_metric([kind, outcome], runs.buckets(), runs.sum)
            jobs.add_metric([kind, outcome], float(count.n))
        yield wait
        yield duration
        yield jobs


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
        self.busy_polling = Gauge(
            "foreman_worker_busy_polling",
            "1 while wake-ups come too fast and the worker polls on a short period instead.",
            registry=r,
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
        self._per_job = _PerJob()  # claim wait, run duration, outcomes: see Tally
        r.register(self._per_job)
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

    def claim_wait_of(self, kind: str) -> Tally:
        """The claim-wait histogram of one kind."""
        tally = self._per_job.claim_wait.get(kind)
        if tally is None:
            tally = self._per_job.claim_wait[kind] = Tally(_FAST)
        return tally

    def finished_of(self, kind: str, outcome: str) -> tuple[Tally, Tally]:
        """The outcome counter and run-duration histogram of one (kind, outcome)."""
        key = (kind, outcome)
        pair = self._per_job.finished.get(key)
        if pair is None:
            pair = self._per_job.finished[key] = (Tally(), Tally(_RUN))
        return pair
