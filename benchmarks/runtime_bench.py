"""foreman-rt on its own: enqueue rates, wake latency, drain rates with 1 and 2 processes.

    python benchmarks/runtime_bench.py [--dsn DSN] [--jobs 20000] [--latency-jobs 200]

Prints a table of medians over --reps repetitions (min-max in brackets)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import foreman_rt
from foreman_rt import aio, db, migrations
from foreman_rt.embedded import resolve_dsn

HERE = Path(__file__).resolve().parent
PARAMS = {"payload": "x" * 80}


async def fresh_schema(dsn: str, name: str) -> None:
    conn = await db.connect(dsn, name)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await migrations.migrate(conn, name)
    finally:
        await conn.close()


def start_workers(
    dsn: str, schema: str, processes: int, concurrency: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "foreman_rt",
            "--dsn",
            dsn,
            "--schema",
            schema,
            "--log-level",
            "WARNING",
            "worker",
            "--handlers",
            "noop_handlers:HANDLERS",
            "--processes",
            str(processes),
            "--concurrency",
            str(concurrency),
        ],
        env=env,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def single_enqueue_rate(dsn: str, schema: str, n: int) -> float:
    async with await foreman_rt.Client.connect(dsn, schema, max_size=1) as client:
        t0 = time.perf_counter()
        for _ in range(n):
            await client.enqueue("bench.noop", PARAMS)
        return n / (time.perf_counter() - t0)


async def bulk_enqueue_rate(dsn: str, schema: str, n: int, batch: int = 5000) -> float:
    async with await foreman_rt.Client.connect(dsn, schema, max_size=1) as client:
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            await client.enqueue_many(
                [{"kind": "bench.noop", "params": PARAMS} for _ in range(min(batch, n - start))]
            )
        return n / (time.perf_counter() - t0)


async def wait_drained(dsn: str, schema: str, timeout: float = 300) -> None:
    conn = await db.connect(dsn, schema)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = await conn.fetchval("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
            if left == 0:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("drain did not finish")
    finally:
        await conn.close()


async def drain_rate(dsn: str, schema: str, n: int, processes: int) -> float:
    await fresh_schema(dsn, schema)
    await bulk_enqueue_rate(dsn, schema, n)
    proc = start_workers(dsn, schema, processes, 100)
    try:
        t0 = time.perf_counter()
        await wait_drained(dsn, schema)
        return n / (time.perf_counter() - t0)
    finally:
        stop(proc)


async def wake_latency(dsn: str, schema: str, n: int) -> list[float]:
    await fresh_schema(dsn, schema)
    proc = start_workers(dsn, schema, 1, 16)
    try:
        async with await foreman_rt.Client.connect(dsn, schema, max_size=2) as client:
            await client.wait((await client.enqueue("bench.stamp", {})).job.id, 30)  # warm-up
            lat = []
            for _ in range(n):
                res = await client.enqueue("bench.stamp", PARAMS)
                committed = time.time()
                job = await client.wait(res.job.id, 10)
                lat.append((job.result["started"] - committed) * 1000)
                await asyncio.sleep(0.02)
            return lat
    finally:
        stop(proc)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt(values: list[float], digits: int = 0) -> str:
    med = statistics.median(values)
    return f"{med:,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


async def main(args: argparse.Namespace) -> None:
    dsn, embedded = resolve_dsn(args.dsn)
    schema = "bench_rt"
    rows: dict[str, list[float]] = {}
    for _ in range(args.reps):
        await fresh_schema(dsn, schema)
        rows.setdefault("single enqueue (jobs/s, 1 connection)", []).append(
            await single_enqueue_rate(dsn, schema, 2000)
        )
        await fresh_schema(dsn, schema)
        rows.setdefault(f"bulk enqueue (jobs/s, {args.jobs} in batches of 5000)", []).append(
            await bulk_enqueue_rate(dsn, schema, args.jobs)
        )
        rows.setdefault(f"drain {args.jobs} no-op, 1 process (jobs/s)", []).append(
            await drain_rate(dsn, schema, args.jobs, 1)
        )
        rows.setdefault(f"drain {args.jobs} no-op, 2 processes (jobs/s)", []).append(
            await drain_rate(dsn, schema, args.jobs, 2)
        )
        lat = await wake_latency(dsn, schema, args.latency_jobs)
        rows.setdefault("wake latency p50 (ms)", []).append(pct(lat, 0.5))
        rows.setdefault("wake latency p99 (ms)", []).append(pct(lat, 0.99))
        rows.setdefault("wake latency max (ms)", []).append(max(lat))
    server = "embedded" if embedded else "given DSN"
    print(f"\nforeman-rt runtime benchmark ({server}, {args.reps} reps, median [min-max])")
    width = max(len(k) for k in rows)
    for name, values in rows.items():
        print(f"  {name.ljust(width)}  {fmt(values, 2 if 'ms' in name else 0)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    aio.run(main(parser.parse_args()))
