"""What a finished handler means for its job: a pure decision, applied later in a batch."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Any

from foreman_rt.errors import InvalidInput
from foreman_rt.handlers import Cancelled, PermanentError, Retry
from foreman_rt.retry import RetryPolicy
from foreman_rt.values import clean_text, encode_params

ERROR_MAX_CHARS = 16_000


class StopReason(Enum):
    """Why the runtime interrupted a handler."""

    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The facts about one attempt that the decision needs."""

    run_id: int
    attempt: int
    max_attempts: int
    backoff_base: float | None
    backoff_max: float | None


@dataclass(frozen=True, slots=True)
class Succeeded:
    """Complete the run with this JSON result (and progress not yet sent by a heartbeat)."""

    run_id: int
    result_json: str
    progress: tuple[int | None, int | None, str | None] = (None, None, None)


@dataclass(frozen=True, slots=True)
class Failed:
    """End the run with `run_status`; retry after `retry_in` seconds (None: no retry)."""

    run_id: int
    run_status: str
    error: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class Discard:
    """Change nothing: the attempt no longer holds its lease."""

    run_id: int


Outcome = Succeeded | Failed | Discard


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).strip()
    head = f"{type(exc).__name__}: {exc}"
    full = f"{head}\n{text}" if text and text != head else head
    return clean_text(full[:ERROR_MAX_CHARS])


def succeeded(run_id: int, result: Any) -> Outcome:
    """A handler returned `result`: complete, unless the result cannot be stored."""
    if result is None:
        return Succeeded(run_id, "null")
    try:
        return Succeeded(run_id, encode_params(result))
    except InvalidInput as exc:
        return Failed(run_id, "failed", clean_text(f"unusable result: {exc.message}"), None)


def failed(
    attempt: Attempt, exc: BaseException, reason: StopReason | None, policy: RetryPolicy
) -> Outcome:
    """A handler raised `exc` (or was interrupted for `reason`): decide the run's end."""
    if reason is StopReason.LEASE_LOST:
        return Discard(attempt.run_id)
    if reason is StopReason.CANCEL or isinstance(exc, Cancelled):
        return Failed(attempt.run_id, "cancelled", "cancelled by request", None)
    if reason is StopReason.SHUTDOWN:
        return Failed(attempt.run_id, "abandoned", "worker shut down before the job finished", 0.0)
    if isinstance(exc, PermanentError):
        return Failed(attempt.run_id, "failed", _describe(exc), None)
    if _invalid_params(exc):
        text = clean_text(f"invalid params: {exc}"[:ERROR_MAX_CHARS])
        return Failed(attempt.run_id, "failed", text, None)
    if isinstance(exc, Retry) and exc.delay is not None:
        delay = max(0.0, float(exc.delay))
    else:
        delay = policy.delay(attempt.attempt, base=attempt.backoff_base, cap=attempt.backoff_max)
    return Failed(attempt.run_id, "failed", _describe(exc), delay)


def _invalid_params(exc: BaseException) -> bool:
    """A pydantic ValidationError (params that do not fit the handler's model). Checked through
    sys.modules: none can be raised before pydantic is imported, and workers whose handlers
    take plain JSON never import it."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)
