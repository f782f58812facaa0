"""Example handlers: progress, a retry, a permanent failure, a cancellable job, pydantic params."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel

from foreman_rt import JobContext, PermanentError, Retry


async def resize(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Pretend to resize `steps` images, reporting progress after each."""
    steps = int(params.get("steps", 10))
    for i in range(1, steps + 1):
        await asyncio.sleep(float(params.get("step_seconds", 0.15)))
        await ctx.progress(i, steps, f"image {i}/{steps}")
    return {"resized": steps}


async def flaky(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Fails its first attempt with a retry request, then succeeds."""
    if ctx.attempt < int(params.get("succeed_on", 2)):
        raise Retry(f"upstream busy on attempt {ctx.attempt}", delay=0.3)
    return {"attempts": ctx.attempt}


async def poison(params: dict[str, Any], ctx: JobContext) -> None:
    """Always fails permanently: retrying would not help."""
    raise PermanentError(f"record {params.get('record', '?')} is malformed")


def slow(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A plain (sync) handler that runs in a thread and polls for cancellation."""
    deadline = time.monotonic() + float(params.get("seconds", 30))
    while time.monotonic() < deadline:
        ctx.raise_if_cancelled()
        time.sleep(0.01)
    return {"slept": params.get("seconds", 30)}


class Email(BaseModel):
    """Typed params: invalid ones fail the job at once with the validation message."""

    to: str
    subject: str = "hello"


async def send_email(params: Email, ctx: JobContext) -> dict[str, Any]:
    """Pretend to send an email."""
    await asyncio.sleep(0.05)
    return {"sent_to": params.to, "subject": params.subject}
