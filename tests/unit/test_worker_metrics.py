"""The worker's per-job metrics are kept without locks and exposed as ordinary Prometheus
histograms and a counter, with the names, labels and bucket semantics of docs/metrics.md."""

from __future__ import annotations

from prometheus_client import generate_latest

from foreman_rt.worker.metrics import Tally, WorkerMetrics


def _sample(m: WorkerMetrics, name: str, labels: dict[str, str]) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_histogram_buckets_are_cumulative_and_upper_bounds_are_inclusive() -> None:
    t = Tally((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        t.observe(value)
    assert t.buckets() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert t.sum == 4.65


def test_per_job_metrics_are_exposed_under_their_documented_names() -> None:
    m = WorkerMetrics()
    m.claim_wait_of("email").observe(0.003)
    m.claim_wait_of("email").observe(7.0)
    count, duration = m.finished_of("email", "succeeded")
    count.inc()
    count.inc()
    duration.observe(0.02)
    m.finished_of("email", "failed")[0].inc()

    wait = {"kind": "email"}
    assert _sample(m, "foreman_worker_claim_wait_seconds_count", wait) == 2
    assert _sample(m, "foreman_worker_claim_wait_seconds_sum", wait) == 7.003
    assert _sample(m, "foreman_worker_claim_wait_seconds_bucket", {**wait, "le": "0.005"}) == 1
    assert _sample(m, "foreman_worker_claim_wait_seconds_bucket", {**wait, "le": "5.0"}) == 1
    assert _sample(m, "foreman_worker_claim_wait_seconds_bucket", {**wait, "le": "+Inf"}) == 2
    ok = {"kind": "email", "outcome": "succeeded"}
    assert _sample(m, "foreman_worker_jobs_total", ok) == 2
    assert _sample(m, "foreman_worker_jobs_total", {**ok, "outcome": "failed"}) == 1
    assert _sample(m, "foreman_worker_run_duration_seconds_count", ok) == 1
    assert _sample(m, "foreman_worker_run_duration_seconds_bucket", {**ok, "le": "0.05"}) == 1
    text = generate_latest(m.registry).decode()
    assert "# TYPE foreman_worker_claim_wait_seconds histogram" in text
    assert "# TYPE foreman_worker_jobs_total counter" in text
