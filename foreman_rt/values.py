"""Job and run states, limits, and validation of what callers send: no I/O, and no pydantic, so
worker processes, which need only these, do not load it (about 6 MB each)."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from foreman_rt.errors import InvalidInput

NAME_MAX = 128
KEY_MAX = 255
PARAMS_MAX_BYTES = 1_048_576
JSON_DEPTH_MAX = 100
PRIORITY_MIN, PRIORITY_MAX = -10_000, 10_000
MAX_ATTEMPTS_MAX = 1000
DEFAULT_MAX_ATTEMPTS = 3
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
_NUL_RE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
BIGINT_MAX = 2**63 - 1


class JobStatus(StrEnum):
    """States of a job; terminal ones never change again (except an explicit retry)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class RunStatus(StrEnum):
    """States of one attempt (a row in job_runs)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


_KNOWN_NAMES: set[str] = set()  # names that passed: callers repeat a few kinds and queues
_KNOWN_NAMES_MAX = 4096


def validate_name(field: str, value: Any) -> str:
    """kind, queue and tenant: 1-128 chars of letters, digits and _ . : / - ."""
    if type(value) is str and value in _KNOWN_NAMES:
        return value
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be a non-empty string", code=f"invalid_{field}")
    if len(value) > NAME_MAX:
        raise InvalidInput(
            f"{field} is {len(value)} characters long; the limit is {NAME_MAX}",
            code=f"invalid_{field}",
        )
    if not _NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} {value[:40]!r} has characters outside letters, digits and _ . : / - "
            "(and must start with a letter or digit)",
            code=f"invalid_{field}",
        )
    if type(value) is str:  # not a subclass, whose hash or equality may differ
        if len(_KNOWN_NAMES) >= _KNOWN_NAMES_MAX:
            _KNOWN_NAMES.clear()
        _KNOWN_NAMES.add(value)
    return value


def validate_label(field: str, value: Any) -> str | None:
    """A free-text label (service): up to 128 characters, no NUL or control characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > NAME_MAX or not value.isprintable():
        raise InvalidInput(
            f"{field} must be printable text of at most {NAME_MAX} characters",
            code=f"invalid_{field}",
        )
    return value


def validate_key(value: Any) -> str | None:
    """An idempotency key: 1-255 printable characters, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= KEY_MAX or not value.isprintable():
        raise InvalidInput(
            f"idempotency_key must be 1-{KEY_MAX} printable characters",
            code="invalid_idempotency_key",
        )
    return value


def validate_int(field: str, value: Any, low: int, high: int) -> int:
    """An integer within [low, high] (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{field} must be an integer from {low} to {high}, got {value!r}",
            code=f"invalid_{field}",
        )
    return value


def validate_scheduled_at(value: Any) -> datetime | None:
    """A timezone-aware datetime, or None for 'now'."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(
            "scheduled_at must be a timezone-aware datetime", code="invalid_scheduled_at"
        )
    return value


def validate_delay(value: Any) -> timedelta | None:
    """A delay in seconds (number or timedelta), 0 to 10 years."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= 315_360_000  # also false for NaN; safe for huge ints
    ):
        raise InvalidInput(
            f"delay must be 0 to 315360000 seconds, got {value!r}", code="invalid_delay"
        )
    return timedelta(seconds=seconds)


def validate_backoff(value: Any) -> tuple[float | None, float | None]:
    """A per-job backoff (base seconds, cap seconds), or None for the worker's policy."""
    if value is None:
        return None, None
    pair = value if isinstance(value, tuple | list) and len(value) == 2 else ()
    try:
        if len(pair) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int | float) for v in pair
        ):
            raise TypeError
        base, cap = float(pair[0]), float(pair[1])
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(
            "backoff must be a pair (base_seconds, max_seconds)", code="invalid_backoff"
        ) from None
    if not (math.isfinite(base) and math.isfinite(cap) and 0 <= base <= cap <= 86_400 * 30):
        raise InvalidInput(
            "backoff needs 0 <= base_seconds <= max_seconds <= 30 days", code="invalid_backoff"
        )
    return base, cap


def clean_text(text: str) -> str:
    """Text PostgreSQL can store: NUL and lone surrogates become U+FFFD."""
    return _UNSTORABLE_RE.sub("\ufffd", text)


def encode_params(params: Any) -> str:
    """JSON-encode params (None becomes {}), within the size and depth limits, free of NUL."""
    try:
        text = json.dumps({} if params is None else params, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise _too_deep() from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"params are not JSON-serialisable: {exc}", code="invalid_params"
        ) from None
    # Each level of nesting takes at least two characters ("[]" or "{}"), so shorter JSON
    # cannot be too deep, and the walk over the params is needed only for longer ones.
    if len(text) > 2 * JSON_DEPTH_MAX and _depth(params) > JSON_DEPTH_MAX:
        raise _too_deep()
    if len(text) > PARAMS_MAX_BYTES:  # ASCII-only JSON: characters are bytes
        raise InvalidInput(
            f"params are {len(text)} bytes as JSON; the limit is {PARAMS_MAX_BYTES}",
            code="params_too_large",
        )
    if "\\u0000" in text and _NUL_RE.search(text):  # the substring test is the fast path
        raise InvalidInput(
            "params contain a NUL character (\\u0000), which PostgreSQL jsonb cannot store",
            code="invalid_params",
        )
    if "\\ud" in text and _has_lone_surrogate(params):
        raise InvalidInput(
            "params contain a lone surrogate (\\ud800-\\udfff without its pair), which is not "
            "valid Unicode; decode the text properly or drop the character",
            code="invalid_params",
        )
    return text


def _too_deep() -> InvalidInput:
    return InvalidInput(f"params nest deeper than {JSON_DEPTH_MAX} levels", code="invalid_params")


def _has_lone_surrogate(params: Any) -> bool:
    """True when some string in `params` holds a surrogate code point (never valid UTF-8)."""
    try:
        json.dumps(params, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (iterative: safe for any depth)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > JSON_DEPTH_MAX:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_id(value: Any, what: str = "job") -> int:
    """A job or run id from an int or its string form; InvalidInput otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= 19
        and 0 < int(value) < 2**63
    ):
        return int(value)
    raise InvalidInput(
        f"{what} id must be a positive integer, got {value!r}", code=f"invalid_{what}_id"
    )
