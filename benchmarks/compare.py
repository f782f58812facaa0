"""foreman-rt against pgqueuer and procrastinate on one PostgreSQL, workload by workload.

    python benchmarks/compare.py            # full: 3 repetitions (make bench)
    python benchmarks/compare.py --quick    # 1 repetition, shorter workloads (make bench-quick)
    python benchmarks/compare.py --dsn postgresql://user@host/db --systems foreman-rt,pgqueuer

Every system gets a fresh database for every workload run (CREATE DATABASE, its own schema
installer, DROP DATABASE after), systems take turns in a rotating order, and the table printed
at the end holds medians with [min-max] over the repetitions. JSON and a PNG chart go to
benchmarks/results/. docs/benchmarks.md describes the method, the settings and the caveats."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import probe
import psutil

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCHEMA = "bench"  # foreman-rt's schema inside its database; the peers use public


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How big each workload is; --quick shrinks the slow ones."""

    quick: bool
    reps: int
    jobs: int = 20_000  # W1, W5, SQL floor
    bulk_batch: int = 5_000  # jobs per bulk-enqueue call
    steady_seconds: float = 20.0  # W2, W2b
    latency_jobs: int = 200  # W3
    latency_gap: float = 0.020  # W3: seconds between jobs
    notify_seconds: float = 10.0  # W4 (each of trigger on and off)
    notify_slices: int = 12  # W4 interleaved: alternating on/off slices in one database
    notify_slice_seconds: float = 2.0
    retained: int = 1_000_000  # W5: finished jobs kept in the tables
    cancel_jobs: int = 50  # W6
    sse_jobs: int = 100  # W7
    producers: int = 16  # W2b, W4
    drain_timeout: float = 900.0  # a drain still running then is a failure
    drain_timebox: float | None = None  # quick: stop measuring a drain this long after it starts

    @classmethod
    def make(cls, quick: bool, reps: int | None) -> Config:
        if quick:
            return cls(
                quick=True,
                reps=reps or 1,
                steady_seconds=5.0,
                latency_jobs=50,
                sse_jobs=30,
                notify_seconds=5.0,
                notify_slices=6,
                notify_slice_seconds=1.0,
                retained=200_000,
                drain_timebox=30.0,
            )
        return cls(quick=False, reps=reps or 3)


@dataclass(frozen=True)
class Tuning:
    """Worker settings per system, chosen for a 2-core machine (see docs/benchmarks.md)."""

    foreman_concurrency: int = 200  # slots per process; one claim statement fills all free ones
    pgq_batch_size: int = 100  # jobs per dequeue statement (and per completion-log flush)
    pgq_concurrency: int = 200  # max_concurrent_tasks per process (pgqueuer wants >= 2x batch)
    proc_concurrency: int = 20  # run_worker_async(concurrency=...) per process
    proc_pool_size: int = 22  # psycopg pool per worker process (concurrency + listen + spare)


# -- the server and one database per system per run -------------------------------------------


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` (URL or key=value form)."""
    if "://" in dsn:
        return urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    return f"{dsn} dbname={name}"


class Server:
    """The PostgreSQL every system shares; makes and drops the per-run databases."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, timeout=30)

    async def create(self, name: str) -> str:
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
            # Durable commits for every system, whatever the server default is.
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        finally:
            await conn.close()
        return with_database(self.dsn, name)

    async def drop(self, name: str) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def describe(self) -> dict[str, str]:
        conn = await self._admin()
        try:
            out = {}
            for name in (
                "server_version",
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "wal_sync_method",
                "shared_buffers",
                "max_connections",
                "max_wal_size",
                "autovacuum",
            ):
                out[name] = await conn.fetchval(f"SHOW {name}")
            return out
        finally:
            await conn.close()


# -- what the handlers report -----------------------------------------------------------------


class ProbeServer(asyncio.DatagramProtocol):
    """Receives the handlers' datagrams (see probe.py) on a loopback UDP port."""

    def __init__(self) -> None:
        self.firsts: list[float] = []
        self._seen: dict[tuple[str, str], float] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self.address = ""

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.address = f"127.0.0.1:{sock.getsockname()[1]}"

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            event, token, stamp, _pid = data.decode().split()
            when = float(stamp)
        except ValueError:
            return
        if event == "f":
            self.firsts.append(when)
            return
        key = (event, token)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(when)
        else:
            self._seen[key] = when

    async def wait(self, event: str, token: int, timeout: float) -> float | None:
        """When the handler reported `event` for `token`; None if not within `timeout`."""
        key = (event, str(token))
        if key in self._seen:
            return self._seen.pop(key)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[key] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(key, None)


_tokens = itertools.count(1)


def token() -> int:
    return next(_tokens)


# -- worker processes and their memory --------------------------------------------------------


class Workers:
    """The worker processes of one run; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, argvs: list[list[str]], probe_address: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            probe.PROBE_ENV: probe_address,
        }
        self.procs = [subprocess.Popen(argv, env=env) for argv in argvs]
        self.started = time.time()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a worker process exited early with code {p.returncode}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def tree(pids: list[int]) -> list[psutil.Process]:
    """The processes and all their live descendants (those gone already are left out)."""
    procs: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
    return procs


def tree_rss(pids: list[int]) -> int:
    """Resident memory of the processes and all their descendants, in bytes."""
    total = 0
    for proc in tree(pids):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far: their own, their live
    descendants', and that of the descendants they have reaped."""
    total = 0.0
    for proc in tree(pids):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def server_pid(backend_pid: int) -> int | None:
    """The postmaster of a local PostgreSQL backend (None when the server is not local)."""
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(backend_pid).parent()
        if parent is not None and "postgres" in parent.name():
            return parent.pid
    return None


class ProcessSampler(threading.Thread):
    """Samples tree_rss every 50 ms and keeps the peak; also records the CPU time used by the
    workers and by the PostgreSQL server (all its processes), to share it out per job."""

    def __init__(self, pids: list[int], server: int | None = None, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.server = server
        self.interval = interval
        self.peak = 0
        self.cpu: list[tuple[float, float, float]] = []  # (unix time, workers s, server s)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pids))
            self._sample_cpu()
            self._stop_event.wait(self.interval)
        self._sample_cpu()  # the drain ended since the last sample: one more brackets its end

    def _sample_cpu(self) -> None:
        server = tree_cpu([self.server]) if self.server else math.nan
        self.cpu.append((time.time(), tree_cpu(self.pids), server))

    def cpu_between(self, start: float, end: float) -> tuple[float, float] | None:
        """CPU seconds (workers, server) used from `start` to `end` (unix times), read from the
        samples by linear interpolation; None without samples around both ends."""

        def at(t: float, column: int) -> float | None:
            for (t0, *v0), (t1, *v1) in itertools.pairwise(self.cpu):
                if t0 <= t <= t1:
                    w = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                    return v0[column] + (v1[column] - v0[column]) * w
            return None

        spent = [(at(end, c), at(start, c)) for c in (0, 1)]
        if any(a is None or b is None for a, b in spent):
            return None
        return spent[0][0] - spent[0][1], spent[1][0] - spent[1][1]  # type: ignore[operator]

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


# -- the systems ------------------------------------------------------------------------------


class Producer:
    """One producer's handle: enqueue a single job (own transaction), cancel a job."""

    async def enqueue(self, kind: str, params: dict[str, Any]) -> int:
        raise NotImplementedError

    async def cancel(self, job_id: int) -> None:
        raise NotImplementedError


class System:
    """What the workloads need from one job system."""

    name = ""
    key = ""
    unfinished_sql = ""  # how many jobs are not yet finished
    busy_sql = ""  # whether any job is unfinished: an existence test, polled during drains
    completed_sql = ""  # jobs finished successfully
    last_done_sql = ""  # epoch seconds of the last successful completion, as recorded
    discard_sql = ""  # delete jobs not yet started (ends a time-boxed drain)
    trigger: tuple[str, str] = ("", "")  # (table, trigger) that NOTIFYs on insert
    sse = ""  # why W7 cannot run (empty: the system streams one job's changes over SSE)

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    async def install(self, dsn: str) -> None:
        raise NotImplementedError

    async def admin(self, dsn: str) -> asyncpg.Connection:
        return await asyncpg.connect(dsn, timeout=30)

    def worker_argvs(self, dsn: str, processes: int) -> list[list[str]]:
        raise NotImplementedError

    def producers(
        self, dsn: str, count: int
    ) -> contextlib.AbstractAsyncContextManager[list[Producer]]:
        raise NotImplementedError

    async def bulk_enqueue(self, dsn: str, n: int, batch: int) -> None:
        raise NotImplementedError

    async def retain(self, conn: asyncpg.Connection, n: int) -> None:
        """Add `n` finished jobs as the system itself would have left them."""
        raise NotImplementedError


class ForemanRT(System):
    name = "foreman-rt"
    key = "foreman"
    unfinished_sql = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
    busy_sql = (
        "SELECT EXISTS (SELECT FROM jobs WHERE status = 'pending')"
        " OR EXISTS (SELECT FROM jobs WHERE lease_expires_at IS NOT NULL)"  # running
    )
    completed_sql = "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
    last_done_sql = (
        "SELECT extract(epoch FROM max(completed_at))::float8 FROM jobs"
        " WHERE status IN ('succeeded', 'failed', 'cancelled')"
    )
    discard_sql = "DELETE FROM jobs WHERE status = 'pending'"
    trigger = (f'"{SCHEMA}".jobs', "jobs_inserted")

    def settings(self) -> dict[str, Any]:
        import foreman_rt

        return {
            "version": foreman_rt.__version__,
            "concurrency per process": self.tuning.foreman_concurrency,
            "worker": "python -m foreman_rt worker --processes P --concurrency "
            f"{self.tuning.foreman_concurrency} (defaults otherwise: flush 2 ms / 1000, "
            "lease 30 s, poll 1 s, busy polling from 500 wake-ups/s every 5 ms)",
            "client": "foreman_rt.Client (asyncpg pool): enqueue / enqueue_many / cancel",
        }

    async def install(self, dsn: str) -> None:
        from foreman_rt import db, migrations

        conn = await db.connect(dsn, SCHEMA)
        try:
            await migrations.migrate(conn, SCHEMA)
        finally:
            await conn.close()

    async def admin(self, dsn: str) -> asyncpg.Connection:
        return await asyncpg.connect(dsn, timeout=30, server_settings={"search_path": SCHEMA})

    def worker_argvs(self, dsn: str, processes: int) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "foreman_rt",
                "--dsn",
                dsn,
                "--schema",
                SCHEMA,
                "--log-level",
                "WARNING",
                "worker",
                "--handlers",
                "bench_handlers:HANDLERS",
                "--concurrency",
                str(self.tuning.foreman_concurrency),
                "--processes",
                str(processes),
            ]
        ]

    @contextlib.asynccontextmanager
    async def producers(self, dsn: str, count: int) -> AsyncIterator[list[Producer]]:
        import foreman_rt

        client = await foreman_rt.Client.connect(dsn, SCHEMA, min_size=count, max_size=count)

        class P(Producer):
            async def enqueue(self, kind: str, params: dict[str, Any]) -> int:
                return (await client.enqueue(kind, params)).job.id

            async def cancel(self, job_id: int) -> None:
                await client.cancel(job_id)

        try:
            yield [P() for _ in range(count)]
        finally:
            await client.close()

    async def bulk_enqueue(self, dsn: str, n: int, batch: int) -> None:
        import foreman_rt

        async with await foreman_rt.Client.connect(dsn, SCHEMA, max_size=1) as client:
            for start in range(0, n, batch):
                await client.enqueue_many(
                    [
                        {"kind": "bench.noop", "params": probe.params(start + i)}
                        for i in range(min(batch, n - start))
                    ]
                )

    async def retain(self, conn: asyncpg.Connection, n: int) -> None:
        # A finished foreman-rt job is its jobs row, which keeps its succeeded attempt.
        await conn.execute(
            """
            INSERT INTO jobs (kind, params, status, attempt_count, result, scheduled_at,
                              enqueued_at, started_at, completed_at, updated_at, run_id,
                              worker_id, attempt_started_at, run_updated_at)
            SELECT 'bench.noop', jsonb_build_object('token', g, 'payload', $2::text),
                   'succeeded', 1, 'null'::jsonb, t, t, t, t, t,
                   nextval('finished_runs_id_seq'), 'retained', t, t
            FROM generate_series(1, $1::int) AS g,
                 LATERAL (SELECT now() - interval '2 days' + g * interval '1 ms') AS x(t)
            """,
            n,
            probe.PAYLOAD,
        )
        await conn.execute("VACUUM (ANALYZE) jobs, finished_runs")


class PgQueuer(System):
    name = "pgqueuer"
    key = "pgqueuer"
    unfinished_sql = "SELECT count(*) FROM pgqueuer"  # finished jobs move to pgqueuer_log
    busy_sql = "SELECT EXISTS (SELECT FROM pgqueuer)"
    completed_sql = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
    last_done_sql = (
        "SELECT extract(epoch FROM max(created))::float8 FROM pgqueuer_log"
        " WHERE status = 'successful'"
    )
    discard_sql = "DELETE FROM pgqueuer WHERE status = 'queued'"
    trigger = ("pgqueuer", "tg_pgqueuer_changed")
    sse = "no per-job event stream; its dashboard's SSE is debounced 250 ms"

    def settings(self) -> dict[str, Any]:
        t = self.tuning
        return {
            "version": metadata.version("pgqueuer"),
            "driver": "AsyncpgDriver (one asyncpg connection per worker process)",
            "batch_size": t.pgq_batch_size,
            "max_concurrent_tasks per process": t.pgq_concurrency,
            "durability": "durable (default: all tables logged)",
            "worker": "QueueManager.run(batch_size, max_concurrent_tasks), defaults otherwise",
            "client": "Queries(AsyncpgDriver(conn)).enqueue (lists for bulk), "
            "mark_job_as_cancelled",
            "handler": "decodes the JSON payload; bench.hold runs inside `with ctx.cancellation`",
        }

    async def install(self, dsn: str) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    def worker_argvs(self, dsn: str, processes: int) -> list[list[str]]:
        t = self.tuning
        argv = [
            sys.executable,
            str(HERE / "peer_workers.py"),
            "pgqueuer",
            "--dsn",
            dsn,
            "--concurrency",
            str(t.pgq_concurrency),
            "--batch-size",
            str(t.pgq_batch_size),
        ]
        return [argv] * processes

    @contextlib.asynccontextmanager
    async def producers(self, dsn: str, count: int) -> AsyncIterator[list[Producer]]:
        from pgqueuer import AsyncpgDriver, Queries

        conns = [await asyncpg.connect(dsn, timeout=30) for _ in range(count)]

        class P(Producer):
            def __init__(self, conn: asyncpg.Connection) -> None:
                self.queries = Queries(AsyncpgDriver(conn))

            async def enqueue(self, kind: str, params: dict[str, Any]) -> int:
                ids = await self.queries.enqueue(kind, json.dumps(params).encode())
                return int(ids[0])

            async def cancel(self, job_id: int) -> None:
                await self.queries.mark_job_as_cancelled([job_id])  # type: ignore[list-item]

        try:
            yield [P(c) for c in conns]
        finally:
            for c in conns:
                await c.close()

    async def bulk_enqueue(self, dsn: str, n: int, batch: int) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            queries = Queries(AsyncpgDriver(conn))
            for start in range(0, n, batch):
                size = min(batch, n - start)
                await queries.enqueue(
                    ["bench.noop"] * size,
                    [json.dumps(probe.params(start + i)).encode() for i in range(size)],
                    [0] * size,
                )
        finally:
            await conn.close()

    async def retain(self, conn: asyncpg.Connection, n: int) -> None:
        # pgqueuer deletes a finished job from its queue table and keeps three log rows for it
        # (queued, picked, successful: what a drain leaves behind).
        await conn.execute(
            """
            INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint)
            SELECT now() - interval '2 days' + g * interval '1 ms', g + 1000000000,
                   s::pgqueuer_status, 0, 'bench.noop'
            FROM generate_series(1, $1::int) AS g,
                 unnest(ARRAY['queued', 'picked', 'successful']) AS s
            """,
            n,
        )
        await conn.execute("VACUUM (ANALYZE) pgqueuer_log")


class Procrastinate(System):
    name = "procrastinate"
    key = "procrastinate"
    unfinished_sql = (
        "SELECT count(*) FROM procrastinate_jobs"
        " WHERE status = ANY (ARRAY['todo', 'doing']::procrastinate_job_status[])"
    )
    busy_sql = (
        "SELECT EXISTS (SELECT FROM procrastinate_jobs"
        " WHERE status = ANY (ARRAY['todo', 'doing']::procrastinate_job_status[]))"
    )
    completed_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
    last_done_sql = (
        "SELECT extract(epoch FROM max(at))::float8 FROM procrastinate_events"
        " WHERE type = 'succeeded'"
    )
    discard_sql = "DELETE FROM procrastinate_jobs WHERE status = 'todo'"
    trigger = ("procrastinate_jobs", "procrastinate_jobs_notify_queue_job_inserted_v1")
    sse = "no event stream"

    def settings(self) -> dict[str, Any]:
        t = self.tuning
        return {
            "version": metadata.version("procrastinate"),
            "connector": f"PsycopgConnector (psycopg 3 async pool, max_size {t.proc_pool_size})",
            "concurrency per process": t.proc_concurrency,
            "worker": "App.run_worker_async(concurrency, listen_notify=True), "
            "delete_jobs='never' (default)",
            "client": "configure_task(name).defer_async / batch_defer_async, "
            "job_manager.cancel_job_by_id_async(abort=True)",
        }

    def _app(self, dsn: str, pool: int) -> Any:
        import procrastinate

        # It warns that an App made in a __main__ module names tasks oddly; ours are named.
        logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)

        connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=pool, max_size=pool)
        return procrastinate.App(connector=connector)

    async def install(self, dsn: str) -> None:
        app = self._app(dsn, 1)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    def worker_argvs(self, dsn: str, processes: int) -> list[list[str]]:
        t = self.tuning
        argv = [
            sys.executable,
            str(HERE / "peer_workers.py"),
            "procrastinate",
            "--dsn",
            dsn,
            "--concurrency",
            str(t.proc_concurrency),
            "--pool-size",
            str(t.proc_pool_size),
        ]
        return [argv] * processes

    @contextlib.asynccontextmanager
    async def producers(self, dsn: str, count: int) -> AsyncIterator[list[Producer]]:
        app = self._app(dsn, count)

        class P(Producer):
            async def enqueue(self, kind: str, params: dict[str, Any]) -> int:
                return int(await app.configure_task(kind).defer_async(**params))

            async def cancel(self, job_id: int) -> None:
                await app.job_manager.cancel_job_by_id_async(job_id, abort=True)

        async with app.open_async():  # opens the pool and waits for its connections
            yield [P() for _ in range(count)]

    async def bulk_enqueue(self, dsn: str, n: int, batch: int) -> None:
        app = self._app(dsn, 1)
        async with app.open_async():
            deferrer = app.configure_task("bench.noop")
            for start in range(0, n, batch):
                await deferrer.batch_defer_async(
                    *[probe.params(start + i) for i in range(min(batch, n - start))]
                )

    async def retain(self, conn: asyncpg.Connection, n: int) -> None:
        # A finished procrastinate job keeps its row (delete_jobs='never') and three events
        # (deferred, started, succeeded: what a drain leaves behind).
        await conn.execute(
            """
            WITH j AS (
                INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
                SELECT 'default', 'bench.noop',
                       jsonb_build_object('token', g, 'payload', $2::text), 'succeeded', 1
                FROM generate_series(1, $1::int) AS g
                RETURNING id
            )
            INSERT INTO procrastinate_events (job_id, type, at)
            SELECT j.id, e::procrastinate_job_event_type, now() - interval '2 days'
            FROM j, unnest(ARRAY['deferred', 'started', 'succeeded']) AS e
            """,
            n,
            probe.PAYLOAD,
        )
        await conn.execute("VACUUM (ANALYZE) procrastinate_jobs, procrastinate_events")


SYSTEMS: dict[str, type[System]] = {
    "foreman-rt": ForemanRT,
    "pgqueuer": PgQueuer,
    "procrastinate": Procrastinate,
}


# -- workloads --------------------------------------------------------------------------------


async def finish_checkpoint(admin: asyncpg.Connection) -> bool:
    """Run a checkpoint now. Inserting W5's retained rows writes enough WAL to start one, which
    then writes thousands of buffers and makes every page's first change log a full-page image
    while it runs; it must not overlap the drain it was not part of. False when the bench's
    database user may not run CHECKPOINT (neither superuser nor pg_checkpoint)."""
    try:
        await admin.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        return False
    return True


async def _next_status(lines: AsyncIterator[str]) -> str:
    """The job status in the next SSE event's data line."""
    async for line in lines:
        if line.startswith("data:"):
            return str(json.loads(line[5:])["status"])
    raise RuntimeError("the event stream ended")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NotApplicable(Exception):
    """The system cannot run this workload; the message says why."""


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Bench:
    cfg: Config
    server: Server
    probe: ProbeServer
    run_id: str
    log: Callable[[str], None]

    async def cell(
        self, system: System, fn: Callable[[System, str], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Run one workload for one system in a fresh database of its own."""
        name = f"fbench_{self.run_id}_{system.key}"
        dsn = await self.server.create(name)
        try:
            await system.install(dsn)
            return await fn(system, dsn)
        finally:
            await self.server.drop(name)

    def workers(self, system: System, dsn: str, processes: int) -> Workers:
        return Workers(system.worker_argvs(dsn, processes), self.probe.address)

    async def ready(self, producer: Producer, workers: Workers) -> None:
        """Wait until the worker runs jobs: three stamp jobs in a row (also a warm-up)."""
        for _ in range(3):
            tok = token()
            await producer.enqueue("bench.stamp", probe.params(tok))
            if await self.probe.wait("s", tok, 60) is None:
                workers.check()
                raise RuntimeError("the worker did not run a job within 60 s")

    # W1 and W5 ---------------------------------------------------------------------------

    async def drain(
        self, system: System, dsn: str, processes: int, retained: int = 0
    ) -> dict[str, Any]:
        n = self.cfg.jobs
        admin = await system.admin(dsn)
        try:
            checkpointed = None
            if retained:
                await system.retain(admin, retained)
                checkpointed = await finish_checkpoint(admin)
            t = time.perf_counter()
            await system.bulk_enqueue(dsn, n, self.cfg.bulk_batch)
            enqueue_rate = n / (time.perf_counter() - t)
            # Table statistics as autovacuum would have them a minute later: without them the
            # planner guesses, and a fresh 20,000-row queue is not the state being measured.
            await admin.execute("ANALYZE")
            self.probe.firsts.clear()
            server = server_pid(await admin.fetchval("SELECT pg_backend_pid()"))
            workers = self.workers(system, dsn, processes)
            sampler = ProcessSampler(workers.pids, server)
            sampler.start()
            boxed = False
            polls: list[float] = []
            try:
                deadline = time.monotonic() + self.cfg.drain_timeout
                while True:
                    await asyncio.sleep(0.1)
                    workers.check()
                    t_poll = time.perf_counter()
                    busy = await admin.fetchval(system.busy_sql)
                    polls.append(time.perf_counter() - t_poll)
                    if not busy:
                        break
                    box = self.cfg.drain_timebox
                    if box and self.probe.firsts and time.time() - min(self.probe.firsts) > box:
                        boxed = True
                        break
                    if time.monotonic() > deadline:
                        left = await admin.fetchval(system.unfinished_sql)
                        raise TimeoutError(
                            f"{left} of {n} jobs left after {self.cfg.drain_timeout:.0f} s"
                        )
                peak = sampler.stop()
                async with admin.transaction(isolation="repeatable_read"):  # one snapshot
                    last = await admin.fetchval(system.last_done_sql)
                    done = await admin.fetchval(system.completed_sql) - retained
                if not boxed and done != n:
                    raise RuntimeError(f"{done} of {n} jobs succeeded")
                first = min(self.probe.firsts) if self.probe.firsts else workers.started
                cpu = sampler.cpu_between(first, last)
                server_cpu = cpu is not None and not math.isnan(cpu[1])
                if boxed:  # let the worker go idle: drop what it has not started
                    await admin.execute(system.discard_sql)
                    stop_at = time.monotonic() + 30
                    while await admin.fetchval(system.busy_sql) and time.monotonic() < stop_at:
                        await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                idle = tree_rss(workers.pids) / 2**20
            finally:
                if sampler.is_alive():
                    sampler.stop()
                workers.stop()
        finally:
            await admin.close()
        return {
            "enqueue_rate": enqueue_rate,
            "drain_rate": done / (last - first),
            "drain_rate_with_startup": done / (last - workers.started),
            "drained": done,
            "time_boxed": boxed,
            "rss_peak_mb": peak / 2**20,
            "rss_idle_mb": idle,
            # CPU per job over the drain window: worker processes, and every process of the
            # PostgreSQL server (NaN when it is not local). With both cores busy, their sum
            # bounds the rate: 2 cores / (CPU per job).
            "cpu_worker_us_per_job": cpu[0] / done * 1e6 if cpu is not None and done else None,
            "cpu_server_us_per_job": (
                cpu[1] / done * 1e6 if cpu is not None and server_cpu and done else None
            ),
            "cpu_cores_busy": (
                sum(cpu) / (last - first)
                if cpu is not None and server_cpu and last > first
                else None
            ),
            "progress_polls": len(polls),
            "progress_poll_ms_median": statistics.median(polls) * 1000 if polls else None,
            **({} if checkpointed is None else {"checkpoint_after_retain": checkpointed}),
        }

    # W2 and W2b ----------------------------------------------------------------------------

    async def produce(
        self, producers: list[Producer], seconds: float, kind: str
    ) -> tuple[int, float]:
        """Every producer enqueues single jobs back to back for `seconds`."""
        counts = [0] * len(producers)
        stop_at = time.perf_counter() + seconds

        async def run(i: int, producer: Producer) -> None:
            while time.perf_counter() < stop_at:
                await producer.enqueue(kind, probe.params(token()))
                counts[i] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(run(i, p) for i, p in enumerate(producers)))
        return sum(counts), time.perf_counter() - t0

    async def steady(self, system: System, dsn: str, count: int) -> dict[str, Any]:
        admin = await system.admin(dsn)
        workers = self.workers(system, dsn, 1)
        try:
            async with system.producers(dsn, count) as producers:
                await self.ready(producers[0], workers)
                before = await admin.fetchval(system.completed_sql)
                enqueued, elapsed = await self.produce(
                    producers, self.cfg.steady_seconds, "bench.noop"
                )
                after = await admin.fetchval(system.completed_sql)
                backlog = await admin.fetchval(system.unfinished_sql)
                workers.check()
        finally:
            workers.stop()
            await admin.close()
        return {
            "completed_rate": (after - before) / elapsed,
            "enqueue_rate": enqueued / elapsed,
            "backlog": backlog,
        }

    # W3 ------------------------------------------------------------------------------------

    async def latency(self, system: System, dsn: str) -> dict[str, Any]:
        workers = self.workers(system, dsn, 1)
        lat: list[float] = []
        missed = 0
        try:
            async with system.producers(dsn, 1) as (producer,):
                await self.ready(producer, workers)
                for _ in range(self.cfg.latency_jobs):
                    if missed >= 3 and not lat:
                        break
                    await asyncio.sleep(self.cfg.latency_gap)
                    tok = token()
                    await producer.enqueue("bench.stamp", probe.params(tok))
                    committed = time.time()
                    started = await self.probe.wait("s", tok, 10)
                    if started is None:
                        missed += 1
                    else:
                        lat.append((started - committed) * 1000)
        finally:
            workers.stop()
        if not lat:
            raise RuntimeError("no handler start was reported")
        return {
            "p50_ms": pct(lat, 0.50),
            "p95_ms": pct(lat, 0.95),
            "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat),
            "missed": missed,
        }

    # W4 ------------------------------------------------------------------------------------

    async def notify_cost(
        self, system: System, dsn: str, trigger_on: bool, waiting: bool = False
    ) -> dict[str, Any]:
        """Inserts/s of single-job transactions. foreman-rt notifies only while a worker waits
        for inserts; `waiting` holds such a demand row (as an idle worker would) throughout."""
        admin = await system.admin(dsn)
        try:
            if not trigger_on:
                table, trigger = system.trigger
                await admin.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
            if waiting:  # as a worker arms it (the statement also raises wake_hint)
                from foreman_rt.sql import query

                await admin.execute(
                    query("demand_arm"), "bench-idle-worker", None, 3600.0, False, False
                )
        finally:
            await admin.close()
        async with system.producers(dsn, self.cfg.producers) as producers:
            enqueued, elapsed = await self.produce(producers, self.cfg.notify_seconds, "bench.noop")
        return {"insert_rate": enqueued / elapsed}

    async def notify_cost_interleaved(self, system: System, dsn: str) -> dict[str, Any]:
        """W4 in one database with the same producers: short slices with the trigger on and
        off in ABBA order (on, off, off, on, ...), so drift on a shared machine (checkpoints,
        neighbours) falls on both states alike. Cost: 1 - median(on) / median(off)."""
        table, trigger = system.trigger
        admin = await system.admin(dsn)
        rates: dict[bool, list[float]] = {True: [], False: []}
        try:
            async with system.producers(dsn, self.cfg.producers) as producers:
                for i in range(self.cfg.notify_slices):
                    on = (i % 2 == 0) == (i // 2 % 2 == 0)
                    state = "ENABLE" if on else "DISABLE"
                    await admin.execute(f"ALTER TABLE {table} {state} TRIGGER {trigger}")
                    enqueued, elapsed = await self.produce(
                        producers, self.cfg.notify_slice_seconds, "bench.noop"
                    )
                    rates[on].append(enqueued / elapsed)
        finally:
            await admin.close()
        on_rate, off_rate = statistics.median(rates[True]), statistics.median(rates[False])
        return {
            "on_rate": on_rate,
            "off_rate": off_rate,
            "cost_pct": (1 - on_rate / off_rate) * 100,
        }

    # W6 ------------------------------------------------------------------------------------

    async def cancel_latency(self, system: System, dsn: str) -> dict[str, Any]:
        workers = self.workers(system, dsn, 1)
        lat: list[float] = []
        missed = 0
        try:
            async with system.producers(dsn, 1) as (producer,):
                await self.ready(producer, workers)
                for _ in range(self.cfg.cancel_jobs):
                    if missed >= 3 and not lat:
                        break  # the handler does not see cancellation: stop waiting for it
                    tok = token()
                    job_id = await producer.enqueue("bench.hold", probe.params(tok))
                    if await self.probe.wait("s", tok, 10) is None:
                        missed += 1
                        continue
                    # From issuing the cancel: the handler may see it before the caller has
                    # read the reply, so the statement's own round trip is part of the latency.
                    requested = time.time()
                    await producer.cancel(job_id)
                    seen = await self.probe.wait("c", tok, 5)
                    if seen is None:
                        missed += 1
                    else:
                        lat.append((seen - requested) * 1000)
        finally:
            workers.stop()
        if not lat:
            raise NotApplicable("the handler never saw a CancelledError")
        return {"p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99), "missed": missed}

    # W7 ------------------------------------------------------------------------------------

    async def sse_latency(self, system: System, dsn: str) -> dict[str, Any]:
        """A status change (cancel of a pending job, from issuing the statement) -> the SSE
        event that shows it, read by an HTTP client of a `foreman-rt api` process."""
        if system.sse:
            raise NotApplicable(system.sse)
        import httpx

        port = free_port()
        argv = [sys.executable, "-m", "foreman_rt", "--dsn", dsn, "--schema", SCHEMA]
        argv += ["--log-level", "WARNING", "api", "--port", str(port)]
        api = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat: list[float] = []
        try:
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
                system.producers(dsn, 1) as (producer,),
            ):
                deadline = time.monotonic() + 60
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/foreman/ping")).status_code == 200:
                            break
                    if api.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("foreman-rt api did not start")
                    await asyncio.sleep(0.1)
                for _ in range(self.cfg.sse_jobs):
                    job_id = await producer.enqueue("bench.stamp", probe.params(token()))
                    async with http.stream("GET", f"/foreman/events/{job_id}") as reply:
                        lines = reply.aiter_lines()
                        await _next_status(lines)  # the current state, sent at once
                        requested = time.time()
                        await producer.cancel(job_id)
                        while await _next_status(lines) != "cancelled":
                            pass
                        lat.append((time.time() - requested) * 1000)
        finally:
            api.terminate()
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()
        return {"p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99)}

    # SQL floor -----------------------------------------------------------------------------

    async def sql_floor(self, system: System, dsn: str) -> dict[str, Any]:
        from foreman_rt import db
        from foreman_rt.arrays import id_array, json_array
        from foreman_rt.sql import query

        n = self.cfg.jobs
        await system.bulk_enqueue(dsn, n, self.cfg.bulk_batch)
        conn = await db.connect(dsn, SCHEMA)
        await conn.execute("ANALYZE")
        claim, complete = query("claim"), query("complete_batch")
        done = 0
        try:
            t0 = time.perf_counter()
            while True:
                rows = await conn.fetch(claim, None, ["bench.noop"], 100, "sql-floor", 30.0)
                if not rows:
                    break
                ids = id_array([r["run_id"] for r in rows])
                await conn.fetch(complete, ids, json_array(["null"] * len(rows)), None, None, None)
                done += len(rows)
            elapsed = time.perf_counter() - t0
        finally:
            await conn.close()
        if done != n:
            raise RuntimeError(f"claimed {done} of {n}")
        return {
            "rate": n / elapsed,
            "minimal_rate": await self.minimal_floor(dsn),
            **await self.wake_floor(dsn),
        }

    async def wake_floor(self, dsn: str) -> dict[str, float]:
        """What W3's spacing costs before any runtime: round trips to PostgreSQL made
        latency_gap apart (both sides idle in between, as in W3) against back to back, and
        foreman-rt's claim of one just-inserted job, latency_gap apart, on a worker's settings.
        A W3 job needs a notification hop and one claim round trip."""
        from foreman_rt import db
        from foreman_rt.sql import query

        conn = await db.connect(dsn, SCHEMA)
        other = await db.connect(dsn, SCHEMA)
        try:
            await conn.execute("SET enable_seqscan = off")

            async def timed(
                call: Callable[[], Awaitable[object]],
                gap: float,
                before: Callable[[], Awaitable[object]] | None = None,
            ) -> list[float]:
                out = []
                for _ in range(self.cfg.latency_jobs):
                    if before is not None:
                        await before()
                    t = time.perf_counter()
                    await call()
                    out.append((time.perf_counter() - t) * 1000)
                    if gap:
                        await asyncio.sleep(gap)
                return out

            def select_one() -> Awaitable[object]:
                return conn.fetchval("SELECT 1")

            def insert_one() -> Awaitable[object]:
                return other.execute("INSERT INTO jobs (kind) VALUES ('bench.noop')")

            async def claim_one() -> None:
                rows = await conn.fetch(query("claim"), None, ["bench.noop"], 16, "floor", 30.0)
                if len(rows) != 1:
                    raise RuntimeError(f"claimed {len(rows)} jobs, not 1")

            busy = await timed(select_one, 0.0)
            idle = await timed(select_one, self.cfg.latency_gap)
            claims = await timed(claim_one, self.cfg.latency_gap, before=insert_one)
        finally:
            await conn.close()
            await other.close()
        return {
            "select_busy_ms": statistics.median(busy),
            "select_idle_ms": statistics.median(idle),
            "claim_idle_ms": statistics.median(claims),
        }

    async def minimal_floor(self, dsn: str) -> float:
        """The cheapest durable queue PostgreSQL allows: one table, one partial index, claim by
        UPDATE ... SKIP LOCKED, completion by DELETE, no history, the same loop and batch as
        the SQL floor. Shows what foreman-rt's record (finished jobs, run rows) costs."""
        n = self.cfg.jobs
        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            await conn.execute(
                "DROP SCHEMA IF EXISTS minimal_queue CASCADE; CREATE SCHEMA minimal_queue;"
                " CREATE TABLE minimal_queue.q (id bigint GENERATED ALWAYS AS IDENTITY"
                " PRIMARY KEY, status text NOT NULL DEFAULT 'pending', params jsonb NOT NULL);"
                " CREATE INDEX q_ready ON minimal_queue.q (id) WHERE status = 'pending'"
            )
            params = [json.dumps(probe.params(i)) for i in range(n)]
            await conn.execute(
                "INSERT INTO minimal_queue.q (params) SELECT p::jsonb FROM unnest($1::text[]) p",
                params,
            )
            await conn.execute("ANALYZE minimal_queue.q")
            claim = (
                "UPDATE minimal_queue.q SET status = 'running' WHERE id IN (SELECT id FROM"
                " minimal_queue.q WHERE status = 'pending' ORDER BY id LIMIT $1"
                " FOR UPDATE SKIP LOCKED) RETURNING id, params"
            )
            done = 0
            t0 = time.perf_counter()
            while rows := await conn.fetch(claim, 100):
                ids = [r["id"] for r in rows]
                await conn.execute("DELETE FROM minimal_queue.q WHERE id = ANY ($1::bigint[])", ids)
                done += len(rows)
            elapsed = time.perf_counter() - t0
            await conn.execute("DROP SCHEMA minimal_queue CASCADE")
        finally:
            await conn.close()
        if done != n:
            raise RuntimeError(f"minimal queue claimed {done} of {n}")
        return n / elapsed


# -- the plan, results, table, JSON and chart -------------------------------------------------


@dataclass
class Step:
    key: str
    label: str
    run: Callable[[Bench, System, str], Awaitable[dict[str, Any]]]
    systems: tuple[str, ...] | None = None  # None: every system


def plan(cfg: Config) -> list[Step]:
    retained = f"{cfg.retained:,}"
    return [
        Step("w1_p1", "W1 drain, 1 process", lambda b, s, d: b.drain(s, d, 1)),
        Step("w1_p2", "W1 drain, 2 processes", lambda b, s, d: b.drain(s, d, 2)),
        Step("w2", "W2 steady, 1 producer", lambda b, s, d: b.steady(s, d, 1)),
        Step(
            "w2b",
            f"W2b steady, {cfg.producers} producers",
            lambda b, s, d: b.steady(s, d, cfg.producers),
        ),
        Step("w3", "W3 wake latency", lambda b, s, d: b.latency(s, d)),
        Step("w4_on", "W4 notify trigger on", lambda b, s, d: b.notify_cost(s, d, True)),
        Step("w4_off", "W4 notify trigger off", lambda b, s, d: b.notify_cost(s, d, False)),
        Step(
            "w4_waiting",
            "W4 notify trigger on, a worker waiting",
            lambda b, s, d: b.notify_cost(s, d, True, waiting=True),
            ("foreman-rt",),
        ),
        Step(
            "w4_mix",
            "W4 interleaved on/off slices",
            lambda b, s, d: b.notify_cost_interleaved(s, d),
        ),
        Step(
            "w5",
            f"W5 drain with {retained} finished retained",
            lambda b, s, d: b.drain(s, d, 1, cfg.retained),
        ),
        Step("w6", "W6 cancel latency", lambda b, s, d: b.cancel_latency(s, d)),
        Step("w7", "W7 SSE latency", lambda b, s, d: b.sse_latency(s, d)),
        Step("floor", "SQL floor", lambda b, s, d: b.sql_floor(s, d), ("foreman-rt",)),
    ]


Cells = dict[str, dict[str, Any]]  # one repetition of one system: step key -> cell


@dataclass
class Row:
    label: str
    steps: tuple[str, ...]  # the plan steps it is computed from
    key: str | Callable[[Cells], float | None]  # a cell field of steps[0], or a function
    digits: int = 0
    chart: str | None = None  # chart panel
    only: tuple[str, ...] | None = None  # systems it applies to (others show "-")
    drain: bool = False  # measured during a drain (marked when that drain was time-boxed)

    def get(self, cells: Cells) -> float | None:
        if callable(self.key):
            return self.key(cells)
        value = cells.get(self.steps[0], {}).get(self.key)
        return None if value is None else float(value)

    def boxed(self, cells: Cells) -> bool:
        return self.drain and any(cells.get(step, {}).get("time_boxed") for step in self.steps)


def rows(cfg: Config) -> list[Row]:
    def notify_cost(cells: Cells, on_step: str = "w4_on") -> float | None:
        on = cells.get(on_step, {}).get("insert_rate")
        off = cells.get("w4_off", {}).get("insert_rate")
        return None if on is None or off is None else (1 - on / off) * 100

    def waiting_cost(cells: Cells) -> float | None:
        return notify_cost(cells, "w4_waiting")

    def floor_share(cells: Cells) -> float | None:
        rate = cells.get("w1_p1", {}).get("drain_rate")
        floor = cells.get("floor", {}).get("rate")
        return None if rate is None or floor is None else rate / floor * 100

    p = cfg.producers
    fr = ("foreman-rt",)
    tp, enq, lat, mem = "throughput", "enqueue", "latency", "memory"
    return [
        Row("W1 bulk enqueue (jobs/s)", ("w1_p1",), "enqueue_rate", chart=enq),
        Row("W1 drain, 1 process (jobs/s)", ("w1_p1",), "drain_rate", chart=tp, drain=True),
        Row("W1 drain, 2 processes (jobs/s)", ("w1_p2",), "drain_rate", chart=tp, drain=True),
        Row("W2 1 producer: completed (jobs/s)", ("w2",), "completed_rate", chart=tp),
        Row("W2 1 producer: enqueued (jobs/s)", ("w2",), "enqueue_rate"),
        Row("W2 1 producer: backlog at end (jobs)", ("w2",), "backlog"),
        Row(f"W2b {p} producers: completed (jobs/s)", ("w2b",), "completed_rate", chart=tp),
        Row(f"W2b {p} producers: enqueued (jobs/s)", ("w2b",), "enqueue_rate"),
        Row(f"W2b {p} producers: backlog at end (jobs)", ("w2b",), "backlog"),
        Row("W3 wake latency p50 (ms)", ("w3",), "p50_ms", digits=2, chart=lat),
        Row("W3 wake latency p95 (ms)", ("w3",), "p95_ms", digits=2, chart=lat),
        Row("W3 wake latency p99 (ms)", ("w3",), "p99_ms", digits=2, chart=lat),
        Row("W3 wake latency max (ms)", ("w3",), "max_ms", digits=2),
        Row(f"W4 inserts/s, {p} producers, trigger on", ("w4_on",), "insert_rate", chart=enq),
        Row(f"W4 inserts/s, {p} producers, trigger off", ("w4_off",), "insert_rate", chart=enq),
        Row("W4 notify trigger cost (%)", ("w4_on", "w4_off"), notify_cost, digits=1),
        Row(
            f"W4 inserts/s, {p} producers, on, a worker waiting",
            ("w4_waiting",),
            "insert_rate",
            only=fr,
        ),
        Row(
            "W4 cost while a worker waits (%)",
            ("w4_waiting", "w4_off"),
            waiting_cost,
            digits=1,
            only=fr,
        ),
        Row("W4 interleaved slices: inserts/s, trigger on", ("w4_mix",), "on_rate"),
        Row("W4 interleaved slices: inserts/s, trigger off", ("w4_mix",), "off_rate"),
        Row("W4 interleaved slices: trigger cost (%)", ("w4_mix",), "cost_pct", digits=1),
        Row(
            f"W5 drain, {cfg.retained:,} retained (jobs/s)",
            ("w5",),
            "drain_rate",
            chart=tp,
            drain=True,
        ),
        Row("W6 cancel latency p50 (ms)", ("w6",), "p50_ms", digits=2, chart=lat),
        Row("W6 cancel latency p99 (ms)", ("w6",), "p99_ms", digits=2, chart=lat),
        Row("W7 SSE latency p50 (ms)", ("w7",), "p50_ms", digits=2, chart=lat),
        Row("W7 SSE latency p99 (ms)", ("w7",), "p99_ms", digits=2, chart=lat),
        Row("CPU per job, W1 1 process: worker (us)", ("w1_p1",), "cpu_worker_us_per_job"),
        Row("CPU per job, W1 1 process: PostgreSQL (us)", ("w1_p1",), "cpu_server_us_per_job"),
        Row("CPU per job, W1 2 processes: workers (us)", ("w1_p2",), "cpu_worker_us_per_job"),
        Row("CPU per job, W1 2 processes: PostgreSQL (us)", ("w1_p2",), "cpu_server_us_per_job"),
        Row("W1 2 processes: cores busy", ("w1_p2",), "cpu_cores_busy", digits=2),
        Row("memory: W1 peak RSS, 1 process (MB)", ("w1_p1",), "rss_peak_mb", chart=mem),
        Row("memory: idle RSS after W1 (MB)", ("w1_p1",), "rss_idle_mb", chart=mem),
        Row("memory: W1 peak RSS, 2 processes (MB)", ("w1_p2",), "rss_peak_mb", chart=mem),
        Row("SQL floor: bare claim+complete (jobs/s)", ("floor",), "rate", only=fr),
        Row(
            "minimal queue floor: 1 table, no history (jobs/s)",
            ("floor",),
            "minimal_rate",
            only=fr,
        ),
        Row(
            "W3 floor: SELECT 1 round trip, back to back (ms)",
            ("floor",),
            "select_busy_ms",
            digits=2,
            only=fr,
        ),
        Row(
            "W3 floor: SELECT 1 round trip, 20 ms apart (ms)",
            ("floor",),
            "select_idle_ms",
            digits=2,
            only=fr,
        ),
        Row(
            "W3 floor: claim of 1 job, 20 ms apart (ms)",
            ("floor",),
            "claim_idle_ms",
            digits=2,
            only=fr,
        ),
        Row(
            "W1 1 process as % of SQL floor",
            ("w1_p1", "floor"),
            floor_share,
            digits=1,
            only=fr,
            drain=True,
        ),
    ]


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(values: list[float], digits: int) -> str:
    s = summarize(values)
    med = f"{s['median']:,.{digits}f}"
    if len(values) == 1:
        return med
    return f"{med} [{s['min']:,.{digits}f}-{s['max']:,.{digits}f}]"


class Results:
    def __init__(self, systems: list[System], cfg: Config) -> None:
        self.systems = systems
        self.cfg = cfg
        # raw[system][rep][step] = cell
        self.raw: dict[str, list[Cells]] = {s.name: [{} for _ in range(cfg.reps)] for s in systems}
        self.failures: dict[str, dict[str, str]] = {s.name: {} for s in systems}

    def table(self) -> tuple[list[str], dict[str, Any], bool]:
        """The printed lines, the summary for the JSON, and whether any drain was time-boxed."""
        names = [s.name for s in self.systems]
        summary: dict[str, Any] = {}
        body = []
        any_boxed = False
        for row in rows(self.cfg):
            texts = []
            summary[row.label] = {}
            for name in names:
                reps = self.raw[name]
                values = [v for v in (row.get(rep) for rep in reps) if v is not None]
                if row.only is not None and name not in row.only:
                    texts.append("-")
                elif values:
                    boxed = any(row.boxed(rep) for rep in reps)
                    any_boxed |= boxed
                    texts.append(fmt(values, row.digits) + ("*" if boxed else ""))
                    summary[row.label][name] = {**summarize(values), "values": values}
                    if boxed:
                        summary[row.label][name]["time_boxed"] = True
                else:
                    reason = self._reason(name, row)
                    texts.append(reason)
                    summary[row.label][name] = {"n/a": reason}
            body.append((row.label, texts))
        width = max(len(label) for label, _ in body)
        widths = [max(len(n), *(len(c[i]) for _, c in body)) for i, n in enumerate(names)]
        head = [" " * width, *(n.rjust(w) for n, w in zip(names, widths, strict=True))]
        lines = ["  ".join(head)]
        for label, cells in body:
            line = [label.ljust(width), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))]
            lines.append("  ".join(line))
        return lines, summary, any_boxed

    def _reason(self, name: str, row: Row) -> str:
        for step in row.steps:
            why = self.failures[name].get(step)
            if why:
                return f"n/a ({why})"
        return "n/a"


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, NotApplicable):
        return text
    return f"{type(exc).__name__}: {text}"[:80]


def chart(results: Results, summary: dict[str, Any], title: str, path: Path, boxed: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("throughput", "jobs/s (higher is better)"),
        ("enqueue", "enqueue jobs/s (higher is better)"),
        ("latency", "ms (lower is better)"),
        ("memory", "MB RSS (lower is better)"),
    ]
    names = [s.name for s in results.systems]
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    for ax, (panel, ylabel) in zip(axes.flat, panels, strict=True):
        labels = [r.label for r in rows(results.cfg) if r.chart == panel]
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            med, lo, hi, texts = [], [], [], []
            for label in labels:
                cell = summary[label].get(name, {})
                m = cell.get("median", 0.0)
                med.append(m)
                lo.append(m - cell.get("min", m))
                hi.append(cell.get("max", m) - m)
                digits = 1 if panel == "latency" else 0
                mark = "*" if cell.get("time_boxed") else ""
                texts.append(f"{m:,.{digits}f}{mark}" if "median" in cell else "n/a")
            xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(labels))]
            bars = ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=name)
            ax.bar_label(bars, labels=texts, fontsize=7, rotation=90, padding=3)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([wrap(label) for label in labels], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.2)
        ax.legend(fontsize=8)
    fig.suptitle(title + ("\n* drain time-boxed (quick mode)" if boxed else ""))
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    tmp.replace(path)


def wrap(label: str, width: int = 18) -> str:
    words, lines, line = label.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("foreman-rt", "pgqueuer", "procrastinate", "asyncpg", "psycopg", "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


# -- main -------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    from foreman_rt.embedded import resolve_dsn

    cfg = Config.make(args.quick, args.reps)
    if args.jobs:
        cfg = dataclasses.replace(cfg, jobs=args.jobs)
    tuning = Tuning(
        **{
            k: v
            for k, v in {
                "foreman_concurrency": args.foreman_concurrency,
                "pgq_batch_size": args.pgq_batch_size,
                "pgq_concurrency": args.pgq_concurrency,
                "proc_concurrency": args.proc_concurrency,
                "proc_pool_size": args.proc_pool_size,
            }.items()
            if v is not None
        }
    )
    chosen = args.systems.split(",") if args.systems else list(SYSTEMS)
    systems = [SYSTEMS[name](tuning) for name in chosen]
    steps = plan(cfg)
    if args.workloads:
        wanted = set(args.workloads.split(","))
        steps = [s for s in steps if s.key in wanted or s.key.split("_")[0] in wanted]
    if not cfg.retained or (args.quick and args.skip_w5):
        steps = [s for s in steps if s.key != "w5"]

    dsn, embedded = await asyncio.to_thread(resolve_dsn, args.dsn)
    server = Server(dsn)
    described = await server.describe()
    prober = ProbeServer()
    await prober.start()
    run_id = uuid.uuid4().hex[:8]
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    bench = Bench(cfg, server, prober, run_id, log)
    results = Results(systems, cfg)
    mode = "quick" if cfg.quick else "full"
    log(
        f"{mode} run: {cfg.reps} repetition(s), systems {', '.join(chosen)}, PostgreSQL "
        f"{described['server_version']} ({'embedded' if embedded else 'given DSN'}), "
        f"fsync={described['fsync']}"
    )
    if described["fsync"] != "on":
        log("WARNING: the server runs with fsync=off: commits are not durable, numbers flatter")
    for rep in range(cfg.reps):
        for step in steps:
            eligible = [s for s in systems if step.systems is None or s.name in step.systems]
            shift = (rep + steps.index(step)) % max(1, len(eligible))
            for system in eligible[shift:] + eligible[:shift]:  # alternate who goes first
                t = time.monotonic()
                try:
                    cell = await bench.cell(system, functools.partial(step.run, bench))
                except Exception as exc:
                    results.failures[system.name][step.key] = short_reason(exc)
                    log(f"rep {rep + 1} {step.label}: {system.name} FAILED: {short_reason(exc)}")
                    continue
                results.raw[system.name][rep][step.key] = cell
                shown = ", ".join(
                    f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in cell.items()
                )
                log(
                    f"rep {rep + 1} {step.label}: {system.name} {shown} ({time.monotonic() - t:.1f} s)"
                )

    lines, summary, any_boxed = results.table()
    title = (
        f"foreman-rt vs peers, {mode} ({cfg.reps} rep{'s' if cfg.reps > 1 else ''}, "
        f"{'median [min-max]' if cfg.reps > 1 else 'single run'}), PostgreSQL "
        f"{described['server_version']}, {os.cpu_count()} CPUs shared by producers, "
        "workers and the server"
    )
    print()
    print(title)
    for line in lines:
        print(line)
    if any_boxed:
        print(
            f"* time-boxed: the drain was still running {cfg.drain_timebox:.0f} s after its first "
            f"job started; the rate is over the jobs finished by then (of {cfg.jobs:,})"
        )

    RESULTS.mkdir(exist_ok=True)
    out = {
        "title": title,
        "mode": mode,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        },
        "postgresql": {"source": "embedded" if embedded else "given DSN", **described},
        "versions": versions(),
        "config": asdict(cfg),
        "workloads": [step.key for step in steps],
        "settings": {s.name: s.settings() for s in systems},
        "summary": summary,
        "raw": results.raw,
        "failures": results.failures,
    }
    # A run of a subset (--systems, --workloads) must not replace the full picture.
    stem = f"bench-{mode}" + ("-subset" if args.systems or args.workloads else "")
    json_path = RESULTS / f"{stem}.json"
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(json_path)
    png_path = RESULTS / f"{stem}.png"
    chart(results, summary, title, png_path, any_boxed)
    print(f"\nwrote benchmarks/results/{json_path.name} and benchmarks/results/{png_path.name}")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", help="PostgreSQL to use (default: FOREMAN_DSN, else embedded)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, shorter workloads")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument(
        "--workloads", help="comma-separated subset: w1,w2,w2b,w3,w4,w5,w6,w7,floor"
    )
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 20000)")
    parser.add_argument("--skip-w5", action="store_true", help="with --quick: skip W5")
    tuning = parser.add_argument_group("worker tuning (defaults: see docs/benchmarks.md)")
    tuning.add_argument("--foreman-concurrency", type=int)
    tuning.add_argument("--pgq-batch-size", type=int)
    tuning.add_argument("--pgq-concurrency", type=int)
    tuning.add_argument("--proc-concurrency", type=int)
    tuning.add_argument("--proc-pool-size", type=int)
    return parser.parse_args()


if __name__ == "__main__":
    from foreman_rt import aio

    sys.exit(aio.run(main(parse_args())))
