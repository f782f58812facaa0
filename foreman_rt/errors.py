"""One error hierarchy; every error carries a stable code (see docs/errors.md).

ForemanError
 ├── InvalidInput         code names the field: invalid_kind, params_too_large, ...
 ├── NotFound             job_not_found, run_not_found
 ├── Conflict             lease_lost, invalid_state
 ├── ConfigurationError   invalid_schema, invalid_dsn, schema_not_migrated, migration_changed
 ├── DatabaseUnavailable  database_unavailable
 └── Timeout              wait_timeout
"""

from __future__ import annotations

from typing import Any


class ForemanError(Exception):
    """Base of every error foreman-rt raises on purpose; `code` is stable across releases."""

    code = "foreman_error"
    status = 500

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error envelope: human message, stable code, and any details."""
        return {"error": self.message, "code": self.code, **self.details}


class InvalidInput(ForemanError):
    """The caller sent something foreman-rt cannot accept; nothing was written."""

    code = "invalid_input"
    status = 400


class NotFound(ForemanError):
    """The job or run does not exist (or belongs to another tenant)."""

    code = "not_found"
    status = 404


class Conflict(ForemanError):
    """The request does not fit the current state, e.g. a lease that is no longer held."""

    code = "conflict"
    status = 409


class ConfigurationError(ForemanError):
    """foreman-rt is set up wrongly: bad schema name, missing migrations, changed files."""

    code = "configuration_error"
    status = 500


class DatabaseUnavailable(ForemanError):
    """PostgreSQL could not be reached or refused the connection."""

    code = "database_unavailable"
    status = 503


class Timeout(ForemanError):
    """A wait ran out before the job reached a terminal state."""

    code = "wait_timeout"
    status = 408
