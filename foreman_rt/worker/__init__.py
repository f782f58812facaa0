"""The worker runtime."""

from foreman_rt.worker.runtime import Worker
from foreman_rt.worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
