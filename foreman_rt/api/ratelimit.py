"""Token buckets per API key, in process: `rate` tokens a second up to `burst`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    """One key's bucket."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; returns 0 if allowed, else seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key id; a key's own rate/burst override the defaults."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[int, Bucket] = {}

    def check(self, key_id: int, rate: float | None, burst: int | None) -> int:
        """0 if the request may proceed, else the Retry-After seconds (≥ 1)."""
        now = self._clock()
        bucket = self._buckets.get(key_id)
        r = rate or self._rate
        b = float(burst or self._burst)
        if bucket is None or bucket.rate != r or bucket.burst != b:
            bucket = self._buckets[key_id] = Bucket(r, b, b, now)
        wait = bucket.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
