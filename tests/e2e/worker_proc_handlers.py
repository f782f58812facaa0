"""Handlers for the worker-process tests (imported by `foreman-rt worker` children, which get
this directory on PYTHONPATH): `--handlers worker_proc_handlers:HANDLERS`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from foreman_rt import JobContext


async def echo(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Return the job's number and who ran it."""
    return {"n": params["n"], "pid": os.getpid(), "attempt": ctx.attempt}


async def stall_first(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Hang on the first attempt (long enough to be killed), succeed on any later one."""
    if ctx.attempt == 1:
        await asyncio.sleep(float(params.get("seconds", 30)))
    return {"attempt": ctx.attempt, "pid": os.getpid()}


HANDLERS = {"echo": echo, "stall-first": stall_first}
