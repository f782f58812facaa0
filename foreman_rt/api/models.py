"""Request bodies of the HTTP API: strict (unknown fields are rejected), reference field names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    """Base for request bodies: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class EnqueueBody(Body):
    """POST /foreman/jobs."""

    kind: str
    params: Any = None
    queue: str = "default"
    service: str | None = None
    priority: int = 0
    max_attempts: int = 3
    idempotency_key: str | None = None
    scheduled_at: datetime | None = None


class ClaimBody(Body):
    """POST /foreman/claim and /foreman/jobs/claim."""

    kinds: list[str] = Field(max_length=1000)
    queues: list[str] | None = Field(default=None, max_length=1000)
    worker_id: str = Field(min_length=1, max_length=200)
    lease_seconds: float = 0


class HeartbeatBody(Body):
    """POST …/heartbeat."""

    worker_id: str = Field(min_length=1, max_length=200)
    progress_current: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    progress_total: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    progress_message: str | None = Field(default=None, max_length=1000)
    lease_seconds: float = 0


class CompleteBody(Body):
    """POST …/complete."""

    worker_id: str = Field(min_length=1, max_length=200)
    result: Any = None


class FailBody(Body):
    """POST …/fail."""

    worker_id: str = Field(min_length=1, max_length=200)
    error: str = Field(default="", max_length=16_000)
    retryable: bool = False
    backoff_seconds: float | None = Field(default=None, ge=0, le=86_400 * 30)
    result: Any = None
