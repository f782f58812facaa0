"""The worker's settings: one frozen, validated object."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from foreman_rt.errors import InvalidInput
from foreman_rt.retry import RetryPolicy
from foreman_rt.values import validate_name


def default_worker_id() -> str:
    """host:pid:random — unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker claims, leases, heartbeats, flushes and shuts down."""

    queues: tuple[str, ...] | None = None  # None: every queue
    concurrency: int = 16
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    shutdown_timeout: float = 30.0
    poll_only: bool = False
    busy_wake_rate: float = 500.0  # wake-ups per second from which it polls instead (0: never)
    busy_poll_interval: float = 0.005  # the claim period while it polls so
    flush_interval: float = 0.002
    flush_max: int = 1000
    reap_interval: float = 1.0
    reap_batch: int = 1000
    leader_ttl: float = 10.0
    retention_days: int = 0
    retention_interval: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    worker_id: str = field(default_factory=default_worker_id)

    def __post_init__(self) -> None:
        if self.queues is not None:
            if not self.queues:
                raise InvalidInput("queues must not be empty (None means every queue)")
            for q in self.queues:
                validate_name("queue", q)
        _positive("concurrency", self.concurrency)
        _positive("lease_seconds", self.lease_seconds)
        _positive("poll_interval", self.poll_interval)
        _positive("reap_interval", self.reap_interval)
        _positive("busy_poll_interval", self.busy_poll_interval)
        if self.busy_wake_rate < 0:
            raise InvalidInput("busy_wake_rate must not be negative (0 turns busy polling off)")
        _positive("leader_ttl", self.leader_ttl)
        if self.shutdown_timeout < 0 or self.retention_days < 0:
            raise InvalidInput("shutdown_timeout and retention_days must not be negative")

    @property
    def heartbeat_interval(self) -> float:
        """Leases are renewed at most a third of the lease apart."""
        return self.lease_seconds / 3


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise InvalidInput(f"{name} must be positive, got {value!r}", code=f"invalid_{name}")
