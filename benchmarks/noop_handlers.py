"""Handlers used by the benchmarks: no-op, and one that reports when it started."""

from __future__ import annotations

import time
from typing import Any

from foreman_rt import JobContext


async def noop(params: dict[str, Any], ctx: JobContext) -> None:
    """Does nothing."""


async def stamp(params: dict[str, Any], ctx: JobContext) -> dict[str, float]:
    """Returns the wall-clock time the handler started."""
    return {"started": time.time()}


HANDLERS = {"bench.noop": noop, "bench.stamp": stamp}
