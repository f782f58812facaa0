"""The live demo: migrate, start a real `foreman-rt worker` process with the example handlers,
enqueue a batch (progress, a retry, a permanent failure, a cancel, typed params), print every
change as it happens, then stop the worker with SIGTERM and print the outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from foreman_rt import Client, db, migrations
from foreman_rt.aio import run
from foreman_rt.config import Channels
from foreman_rt.demand import Demand
from foreman_rt.embedded import resolve_dsn
from foreman_rt.payloads import parse_events

SCHEMA = "foreman"
EXPECTED = {
    "demo.resize": "succeeded",
    "demo.flaky": "succeeded",
    "demo.poison": "failed",
    "demo.slow": "cancelled",
    "demo.email": "succeeded",
    "demo.email (bad params)": "failed",
}


class Watch:
    """Prints job changes live from the events channel."""

    def __init__(self, client: Client, names: dict[int, str]) -> None:
        self.client = client
        self.names = names
        self.t0 = time.monotonic()
        self.seen: dict[int, str] = {}
        self.running: asyncio.Queue[int] = asyncio.Queue()

    def on_events(self, payload: str) -> None:
        events = parse_events(payload)
        ids = set(self.names) if events.overflow else events.ids & set(self.names)
        for job_id in ids:
            asyncio.get_running_loop().create_task(self.show(job_id))

    async def show(self, job_id: int) -> None:
        job = await self.client.get(job_id)
        runs = await self.client.runs(job_id)
        run_ = runs[-1] if runs else None
        line = f"{job.status.value:<9} attempt {job.attempt_count}/{job.max_attempts}"
        if run_ is not None and run_.progress_total:
            line += f"  progress {run_.progress_current}/{run_.progress_total}"
        if job.status.value == "pending" and job.attempt_count:
            line += "  (retry scheduled)"
        if self.seen.get(job_id) == line:
            return
        self.seen[job_id] = line
        print(
            f"[{time.monotonic() - self.t0:6.2f}s] job {job_id:<5} {self.names[job_id]:<24} {line}"
        )
        if job.status.value == "running":
            self.running.put_nowait(job_id)


async def main() -> int:
    dsn, embedded = resolve_dsn(sys.argv[1] if len(sys.argv) > 1 else None)
    print("database:", "embedded PostgreSQL" if embedded else dsn)
    conn = await db.connect(dsn, SCHEMA)
    await migrations.migrate(conn, SCHEMA)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "foreman_rt",
            "--dsn",
            dsn,
            "--log-level",
            "WARNING",
            "worker",
            "--kinds",
            ",".join(sorted({k.split(" ")[0] for k in EXPECTED})),
            "--concurrency",
            "8",
            "--lease",
            "6",
            "--shutdown-timeout",
            "5",
        ]
    )
    client = await Client.connect(dsn, SCHEMA)
    try:
        return await demo(client, conn)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(20)
        print(f"worker stopped with exit code {code}")
        await client.close()
        await conn.close()


async def demo(client: Client, conn: Any) -> int:
    names: dict[int, str] = {}
    watch = Watch(client, names)
    await conn.add_listener(Channels.for_schema(SCHEMA).events, lambda *a: watch.on_events(a[3]))
    # State changes notify only while a live wake_demand row asks for events (migration 0007).
    listening = Demand(client.pool, f"demo:{os.getpid()}", (), 300.0, events=True)
    await listening.arm()
    try:
        return await _run_batch(client, watch, names)
    finally:
        await listening.disarm()


async def _run_batch(client: Client, watch: Watch, names: dict[int, str]) -> int:
    batch = [
        ("demo.resize", {"steps": 12}, {}),
        ("demo.flaky", {"succeed_on": 2}, {}),
        ("demo.poison", {"record": 17}, {}),
        ("demo.slow", {"seconds": 60}, {}),
        ("demo.email", {"to": "ada@example.com"}, {}),
        ("demo.email", {"subject": "no recipient"}, {"label": "demo.email (bad params)"}),
    ]
    for kind, params, extra in batch:
        res = await client.enqueue(kind, params, max_attempts=3)
        names[res.job.id] = extra.get("label", kind)
        print(f"enqueued job {res.job.id} {names[res.job.id]}")
    slow_id = next(i for i, n in names.items() if n == "demo.slow")
    while (await watch.running.get()) != slow_id:
        pass
    await asyncio.sleep(0.5)
    print(f"cancelling job {slow_id} (demo.slow) while it runs")
    await client.cancel(slow_id)
    finals = {i: await client.wait(i, 60) for i in names}
    await asyncio.sleep(0.2)
    print("\nresult:")
    ok = True
    for job_id, job in finals.items():
        want = EXPECTED[names[job_id]]
        detail = (
            job.result if job.status.value == "succeeded" else (job.error or "").splitlines()[0]
        )
        mark = "ok" if job.status.value == want else f"UNEXPECTED (wanted {want})"
        ok &= job.status.value == want
        print(
            f"  {names[job_id]:<24} {job.status.value:<9} attempts={job.attempt_count}  "
            f"{str(detail)[:60]}  {mark}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run(main()))
