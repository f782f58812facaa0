"""foreman-rt handlers for benchmarks/compare.py (the peers' equivalents are in peer_workers.py).

bench.noop   does nothing (reports the process's first job)
bench.stamp  reports its start time (wake latency)
bench.hold   reports its start, then sleeps until cancelled and reports the CancelledError
"""

from __future__ import annotations

import asyncio
from typing import Any

import probe

from foreman_rt import JobContext


async def noop(params: dict[str, Any], ctx: JobContext) -> None:
    probe.first()


async def stamp(params: dict[str, Any], ctx: JobContext) -> None:
    probe.send("s", params["token"])


async def hold(params: dict[str, Any], ctx: JobContext) -> None:
    probe.send("s", params["token"])
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        probe.send("c", params["token"])
        raise


HANDLERS = {"bench.noop": noop, "bench.stamp": stamp, "bench.hold": hold}
