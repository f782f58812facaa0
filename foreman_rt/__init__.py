"""foreman-rt: a Postgres-native job runtime (LISTEN/NOTIFY wake-ups, SKIP LOCKED claims)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from foreman_rt.errors import (
    ConfigurationError,
    Conflict,
    DatabaseUnavailable,
    ForemanError,
    InvalidInput,
    NotFound,
    Timeout,
)
from foreman_rt.handlers import Cancelled, JobContext, PermanentError, Retry
from foreman_rt.retry import RetryPolicy
from foreman_rt.values import JobStatus, RunStatus

if TYPE_CHECKING:
    from foreman_rt.client import Client, Enqueued, Page
    from foreman_rt.jobs import EnqueueResult, Job, JobSpec, Run
    from foreman_rt.sync import SyncClient
    from foreman_rt.worker import Worker, WorkerSettings

# Loaded on first use, so a worker process (which needs none of the client side) does not
# import pydantic through them.
_LAZY = {
    "Client": "foreman_rt.client",
    "Enqueued": "foreman_rt.client",
    "Page": "foreman_rt.client",
    "EnqueueResult": "foreman_rt.jobs",
    "Job": "foreman_rt.jobs",
    "JobSpec": "foreman_rt.jobs",
    "Run": "foreman_rt.jobs",
    "SyncClient": "foreman_rt.sync",
    "Worker": "foreman_rt.worker",
    "WorkerSettings": "foreman_rt.worker",
}


def __getattr__(name: str) -> Any:
    """Import the client-side names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'foreman_rt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, loaded or not."""
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "Client",
    "ConfigurationError",
    "Conflict",
    "DatabaseUnavailable",
    "EnqueueResult",
    "Enqueued",
    "ForemanError",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobSpec",
    "JobStatus",
    "NotFound",
    "Page",
    "PermanentError",
    "Retry",
    "RetryPolicy",
    "Run",
    "RunStatus",
    "SyncClient",
    "Timeout",
    "Worker",
    "WorkerSettings",
    "__version__",
]
