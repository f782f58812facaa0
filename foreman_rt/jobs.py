"""Job and Run (pydantic models of the stored rows), enqueue requests and results. The states,
limits and validators live in foreman_rt.values and are re-exported here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asyncpg import Record
from pydantic import BaseModel, ConfigDict

from foreman_rt.errors import InvalidInput
from foreman_rt.values import (
    BIGINT_MAX,
    DEFAULT_MAX_ATTEMPTS,
    JSON_DEPTH_MAX,
    KEY_MAX,
    MAX_ATTEMPTS_MAX,
    NAME_MAX,
    PARAMS_MAX_BYTES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TERMINAL,
    JobStatus,
    RunStatus,
    clean_text,
    encode_params,
    parse_id,
    validate_backoff,
    validate_delay,
    validate_int,
    validate_key,
    validate_label,
    validate_name,
    validate_scheduled_at,
)

__all__ = [
    "BIGINT_MAX",
    "DEFAULT_MAX_ATTEMPTS",
    "JSON_DEPTH_MAX",
    "KEY_MAX",
    "MAX_ATTEMPTS_MAX",
    "NAME_MAX",
    "PARAMS_MAX_BYTES",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "TERMINAL",
    "EnqueueResult",
    "Job",
    "JobSpec",
    "JobStatus",
    "Run",
    "RunStatus",
    "clean_text",
    "encode_params",
    "parse_id",
    "validate_backoff",
    "validate_delay",
    "validate_int",
    "validate_key",
    "validate_label",
    "validate_name",
    "validate_scheduled_at",
]


class Job(BaseModel):
    """A job row as stored; `to_json()` gives the public JSON shape (ids as strings)."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: str
    queue: str
    tenant: str
    service: str | None
    params: Any
    priority: int
    status: JobStatus
    attempt_count: int
    max_attempts: int
    scheduled_at: datetime
    idempotency_key: str | None
    cancel_requested: bool
    result: Any
    error: str | None
    enqueued_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Record) -> Job:
        """Build a Job from a database record (extra columns are ignored)."""
        return cls.model_validate({name: row[name] for name in cls.model_fields})

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape: ids as strings, times in ISO 8601."""
        data = self.model_dump(mode="json", exclude={"params", "result"})
        data["params"], data["result"] = self.params, self.result  # JSON already, any depth
        data["id"] = str(self.id)
        if self.idempotency_key is None:
            del data["idempotency_key"]
        return data


class Run(BaseModel):
    """One attempt of a job (a row in job_runs)."""

    model_config = ConfigDict(frozen=True)

    id: int
    job_id: int
    attempt: int
    worker_id: str
    status: RunStatus
    lease_expires_at: datetime | None
    progress_current: int | None
    progress_total: int | None
    progress_message: str | None
    result: Any
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Record) -> Run:
        """Build a Run from a database record."""
        return cls.model_validate({name: row[name] for name in cls.model_fields})

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape: ids as strings, times in ISO 8601."""
        data = self.model_dump(mode="json", exclude={"result"})
        data["result"] = self.result  # JSON already, any depth
        data["id"] = str(self.id)
        data["job_id"] = str(self.job_id)
        data["created_at"] = data["started_at"]
        return data


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What enqueue returns: the job, and whether this call created it."""

    job: Job
    created: bool


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request to enqueue one job; build it with `JobSpec.build`."""

    kind: str
    params_json: str
    queue: str
    priority: int
    scheduled_at: datetime | None
    delay: timedelta | None
    max_attempts: int
    idempotency_key: str | None
    tenant: str
    service: str | None
    backoff_base_seconds: float | None
    backoff_max_seconds: float | None

    @classmethod
    def build(
        cls,
        kind: str,
        params: Any = None,
        *,
        queue: str = "default",
        priority: int = 0,
        scheduled_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        idempotency_key: str | None = None,
        tenant: str = "default",
        service: str | None = None,
        backoff: tuple[float, float] | None = None,
    ) -> JobSpec:
        """Validate every field; raises InvalidInput with a field-specific code."""
        if scheduled_at is not None and delay is not None:
            raise InvalidInput("give scheduled_at or delay, not both", code="invalid_schedule")
        base, cap = validate_backoff(backoff)
        return cls(
            kind=validate_name("kind", kind),
            params_json=encode_params(params),
            queue=validate_name("queue", queue),
            priority=validate_int("priority", priority, PRIORITY_MIN, PRIORITY_MAX),
            scheduled_at=validate_scheduled_at(scheduled_at),
            delay=validate_delay(delay),
            max_attempts=validate_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS_MAX),
            idempotency_key=validate_key(idempotency_key),
            tenant=validate_name("tenant", tenant),
            service=validate_label("service", service),
            backoff_base_seconds=base,
            backoff_max_seconds=cap,
        )
