"""One worker process of a peer job queue, with the same three handlers as bench_handlers.py.

    python benchmarks/peer_workers.py pgqueuer --dsn DSN --concurrency N --batch-size B
    python benchmarks/peer_workers.py procrastinate --dsn DSN --concurrency N

Each peer is used through its documented public API in its recommended async setup; SIGTERM
stops it gracefully. benchmarks/compare.py starts one such process per worker process."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

import probe


async def run_pgqueuer(args: argparse.Namespace) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.models import Context, Job

    conn = await asyncpg.connect(args.dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    def params(job: Job) -> dict[str, Any]:
        return json.loads(job.payload) if job.payload else {}

    @qm.entrypoint("bench.noop")
    async def noop(job: Job) -> None:
        params(job)  # decode like a real handler would (the others get decoded params)
        probe.first()

    @qm.entrypoint("bench.stamp")
    async def stamp(job: Job) -> None:
        probe.send("s", params(job)["token"])

    @qm.entrypoint("bench.hold", accepts_context=True)
    async def hold(job: Job, ctx: Context) -> None:
        token = params(job)["token"]
        probe.send("s", token)
        with ctx.cancellation:  # pgqueuer's documented opt-in to cancellation
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                probe.send("c", token)
                raise

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    try:
        await qm.run(
            batch_size=args.batch_size,
            max_concurrent_tasks=args.concurrency or None,
            dequeue_timeout=args.dequeue_timeout,
        )
    finally:
        await conn.close()


async def run_procrastinate(args: argparse.Namespace) -> None:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=args.dsn, min_size=1, max_size=args.pool_size
        )
    )

    @app.task(name="bench.noop")
    async def noop(**params: Any) -> None:
        probe.first()

    @app.task(name="bench.stamp")
    async def stamp(**params: Any) -> None:
        probe.send("s", params["token"])

    @app.task(name="bench.hold")
    async def hold(**params: Any) -> None:
        probe.send("s", params["token"])
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # procrastinate cancels async tasks on abort
            probe.send("c", params["token"])
            raise

    async with app.open_async():
        await app.run_worker_async(
            concurrency=args.concurrency,
            listen_notify=True,
            shutdown_graceful_timeout=5.0,
            install_signal_handlers=True,
        )


def main() -> None:
    from datetime import timedelta

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=["pgqueuer", "procrastinate"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=10, help="pgqueuer only")
    parser.add_argument("--pool-size", type=int, default=10, help="procrastinate only")
    parser.add_argument(
        "--dequeue-timeout", type=lambda s: timedelta(seconds=float(s)), default="30"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # It warns that an App made in a __main__ module names tasks oddly; ours are named.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(run_pgqueuer(args) if args.system == "pgqueuer" else run_procrastinate(args))


if __name__ == "__main__":
    main()
