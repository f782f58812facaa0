"""Handlers for the reliability scenarios. Every execution start is appended to a per-process
log file with one unbuffered O_APPEND write, so it survives SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

from foreman_rt import JobContext

_LOG_FD: int | None = None


def _log_fd() -> int:
    global _LOG_FD
    if _LOG_FD is None:
        folder = Path(os.environ["FOREMAN_EXEC_LOG_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"exec-{os.getpid()}.log"
        _LOG_FD = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return _LOG_FD


def record(ctx: JobContext) -> None:
    """Append 'job_id run_id attempt pid' for this execution."""
    os.write(_log_fd(), f"{ctx.job_id} {ctx.run_id} {ctx.attempt} {os.getpid()}\n".encode())


async def work(params: dict[str, Any], ctx: JobContext) -> dict[str, int]:
    """Sleeps params['ms'] (or a random 0-50 ms), then succeeds."""
    record(ctx)
    ms = params.get("ms")
    await asyncio.sleep((random.uniform(0, 50) if ms is None else float(ms)) / 1000)
    return {"attempt": ctx.attempt}


HANDLERS = {"rel.work": work}
