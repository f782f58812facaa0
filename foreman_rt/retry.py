"""Retry backoff: pure functions. The reaper's SQL (sql/queries/reap.sql) uses the same formula."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BASE_SECONDS = 1.0
DEFAULT_MAX_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with 'equal jitter': base * 2^(attempt-1), capped, times U(0.5, 1)."""

    base_seconds: float = DEFAULT_BASE_SECONDS
    max_seconds: float = DEFAULT_MAX_SECONDS

    def delay(
        self,
        attempt: int,
        *,
        base: float | None = None,
        cap: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before the next attempt after `attempt` failed (attempt ≥ 1);
        `base`/`cap` are a job's own overrides."""
        b = self.base_seconds if base is None else base
        c = self.max_seconds if cap is None else cap
        raw = min(c, b * 2.0 ** max(attempt - 1, 0))
        return raw * (0.5 + rand() * 0.5)
