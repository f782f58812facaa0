"""foreman-rt: a Postgres-native job runtime (LISTEN/NOTIFY wake-ups, SKIP LOCKED claims)."""

from foreman_rt.client import Client, Enqueued, Page
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
from foreman_rt.jobs import EnqueueResult, Job, JobSpec, JobStatus, Run, RunStatus
from foreman_rt.retry import RetryPolicy
from foreman_rt.sync import SyncClient
from foreman_rt.worker import Worker, WorkerSettings

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
