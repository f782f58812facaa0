"""The `foreman-rt` command line. Exit codes (docs/cli.md): 0 ok; 1 the waited-for job failed
or was cancelled; 2 usage or invalid input; 3 not found; 4 database or configuration problem;
5 a wait timed out."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from foreman_rt import aio, db, embedded, migrations, output
from foreman_rt.config import DEFAULT_SCHEMA, validate_schema
from foreman_rt.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    ForemanError,
    InvalidInput,
    NotFound,
    Timeout,
)
from foreman_rt.values import JobStatus

if TYPE_CHECKING:  # the client (and pydantic) load only for commands that use them
    from foreman_rt.client import Client

P = ParamSpec("P")
T = TypeVar("T")

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DATABASE, EXIT_TIMEOUT = range(6)
OUTPUT = click.Choice(["table", "json"])


@dataclass
class Context:
    """What every command needs: where the database is and which schema to use."""

    dsn: str | None
    schema: str

    def resolve(self) -> str:
        """The DSN in use (the embedded default logs that it is used)."""
        return embedded.resolve_dsn(self.dsn)[0]

    async def client(self) -> Client:
        """A connected client (checks that the schema is migrated)."""
        from foreman_rt.client import Client

        return await Client.connect(self.resolve(), self.schema, max_size=2)


def _exit_code(exc: ForemanError) -> int:
    if isinstance(exc, InvalidInput):
        return EXIT_USAGE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Timeout):
        return EXIT_TIMEOUT
    if isinstance(exc, DatabaseUnavailable | ConfigurationError):
        return EXIT_DATABASE
    return EXIT_DATABASE


def fail(exc: ForemanError) -> NoReturn:
    """Print one clear line for a foreman-rt error and exit with its code."""
    click.echo(f"error: {exc.message} [{exc.code}]", err=True)
    sys.exit(_exit_code(exc))


def handled(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn foreman-rt errors into one line on stderr and a documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ForemanError as exc:
            fail(exc)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def with_client(ctx: Context, action: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run `action`, close."""

    async def go() -> T:
        client = await ctx.client()
        try:
            return await action(client)
        finally:
            await client.close()

    return aio.run(go())


def with_connection(
    ctx: Context, action: Callable[[db.Connection], Awaitable[T]], *, check: bool = True
) -> T:
    """Open one connection (checking the schema is migrated unless `check=False`), run
    `action`, close."""

    async def go() -> T:
        conn = await db.connect(ctx.resolve(), ctx.schema)
        try:
            if check:
                await db.check_schema(conn, ctx.schema)
            return await action(conn)
        finally:
            await conn.close()

    return aio.run(go())


@click.group()
@click.option(
    "--dsn",
    envvar="FOREMAN_DSN",
    help="PostgreSQL DSN (default: FOREMAN_DSN, DATABASE_URL, else the embedded PostgreSQL).",
)
@click.option(
    "--schema",
    default=DEFAULT_SCHEMA,
    show_default=True,
    envvar="FOREMAN_SCHEMA",
    help="Schema holding foreman-rt's tables.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.version_option(package_name="foreman-rt")
@click.pass_context
@handled
def main(ctx: click.Context, dsn: str | None, schema: str, log_level: str) -> None:
    """foreman-rt: a Postgres-native job runtime."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if dsn is None:
        from foreman_rt.config import dsn_from_env

        dsn = dsn_from_env()
    ctx.obj = Context(dsn=dsn, schema=validate_schema(schema))


@main.group(invoke_without_command=True)
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@click.pass_obj
@handled
def migrate(ctx: Context, dry_run: bool) -> None:
    """Apply pending migrations (or `migrate status`)."""
    if click.get_current_context().invoked_subcommand is not None:
        return

    if dry_run:
        state = with_connection(ctx, lambda c: migrations.status(c, ctx.schema), check=False)
        for m in state.pending:
            click.echo(f"-- {m.version:04d}_{m.name}.sql\n{m.sql}")
        if not state.pending:
            click.echo(f"-- schema {ctx.schema!r} is up to date; nothing to run")
        return
    applied = with_connection(ctx, lambda c: migrations.migrate(c, ctx.schema), check=False)
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"schema {ctx.schema!r} is up to date")


@migrate.command("status")
@click.pass_obj
@handled
def migrate_status(ctx: Context) -> None:
    """List applied and pending migrations."""

    state = with_connection(ctx, lambda c: migrations.status(c, ctx.schema), check=False)
    for a in state.applied:
        click.echo(f"applied  {a.version:04d}_{a.name}  {a.applied_at.isoformat()}")
    for m in state.pending:
        click.echo(f"pending  {m.version:04d}_{m.name}")


def _parse_params(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--params is not valid JSON: {exc}", code="invalid_params") from None


@main.command()
@click.argument("kind")
@click.option("--params", help="Job parameters as JSON.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--delay", type=float, help="Seconds before the job may start.")
@click.option("--idempotency-key", help="A second enqueue with this key returns the first job.")
@click.option("--max-attempts", type=int, default=3, show_default=True)
@click.option("--tenant", default="default", show_default=True)
@click.option("--wait", "wait_", is_flag=True, help="Wait until the job is terminal.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option("--output", "fmt", type=OUTPUT, default="table", show_default=True)
@click.pass_obj
@handled
def enqueue(
    ctx: Context,
    kind: str,
    params: str | None,
    queue: str,
    priority: int,
    delay: float | None,
    idempotency_key: str | None,
    max_attempts: int,
    tenant: str,
    wait_: bool,
    timeout: float | None,
    fmt: str,
) -> None:
    """Enqueue a job of KIND."""
    values = _parse_params(params)

    async def go(client: Client) -> tuple[Any, bool]:
        res = await client.enqueue(
            kind,
            values,
            queue=queue,
            priority=priority,
            delay=delay,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            tenant=tenant,
        )
        job = await client.wait(res.job.id, timeout) if wait_ else res.job
        return job, res.created

    job, created = with_client(ctx, go)
    if fmt == "json":
        click.echo(output.to_json({**job.to_json(), "created": created}))
    else:
        verb = "enqueued" if created else "exists (idempotency key)"
        click.echo(f"{verb}: job {job.id}\n{output.job_detail(job)}")
    if wait_ and job.status is not JobStatus.SUCCEEDED:
        sys.exit(EXIT_JOB_FAILED)


@main.group()
def jobs() -> None:
    """Inspect and manage jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--kind")
@click.option("--queue")
@click.option("--tenant")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Last id of the previous page.")
@click.option("--output", "fmt", type=OUTPUT, default="table", show_default=True)
@click.pass_obj
@handled
def jobs_list(
    ctx: Context,
    status: str | None,
    kind: str | None,
    queue: str | None,
    tenant: str | None,
    limit: int,
    cursor: str | None,
    fmt: str,
) -> None:
    """List jobs, newest first."""
    page = with_client(
        ctx,
        lambda c: c.list(
            status=status, kind=kind, queue=queue, tenant=tenant, limit=limit, cursor=cursor
        ),
    )
    if fmt == "json":
        click.echo(
            output.to_json(
                {"jobs": [j.to_json() for j in page.jobs], "next_cursor": page.next_cursor}
            )
        )
        return
    click.echo(output.jobs_table(page.jobs))
    if page.next_cursor:
        click.echo(f"(more: --cursor {page.next_cursor})")


def _job_command(name: str, doc: str, action: Callable[[Client, str], Awaitable[Any]]) -> None:
    @jobs.command(name, help=doc)
    @click.argument("job_id")
    @click.option("--output", "fmt", type=OUTPUT, default="table", show_default=True)
    @click.pass_obj
    @handled
    def command(ctx: Context, job_id: str, fmt: str) -> None:
        result = with_client(ctx, lambda c: action(c, job_id))
        if isinstance(result, list):
            if fmt == "json":
                click.echo(output.to_json([r.to_json() for r in result]))
            else:
                click.echo(output.runs_table(result))
        elif fmt == "json":
            click.echo(output.to_json(result.to_json()))
        else:
            click.echo(output.job_detail(result))


_job_command("show", "Show one job.", lambda c, i: c.get(i))
_job_command("runs", "Show every attempt of a job.", lambda c, i: c.runs(i))
_job_command(
    "cancel", "Cancel a job (pending at once, running cooperatively).", lambda c, i: c.cancel(i)
)
_job_command("retry", "Put a failed or cancelled job back to pending.", lambda c, i: c.retry(i))


@main.group("db")
def db_group() -> None:
    """The database in use."""


@db_group.command("url")
@click.pass_obj
@handled
def db_url(ctx: Context) -> None:
    """Print the DSN in use (starting the embedded PostgreSQL if no DSN is given)."""
    click.echo(ctx.resolve())


@db_group.command("stop")
@handled
def db_stop() -> None:
    """Stop the embedded PostgreSQL."""
    stopped = embedded.stop()
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL is not running")


def _csv(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


@main.command()
@click.option("--queues", help="Comma-separated queues to work (default: every queue).")
@click.option("--kinds", help="Comma-separated job kinds to run (default: every handler).")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=16,
    show_default=True,
    help="Handler slots per process.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes, supervised and restarted if they die.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="Lease seconds; renewed every third of it.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Safety poll seconds (jittered).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running jobs get to finish on SIGTERM.",
)
@click.option("--poll-only", is_flag=True, help="No LISTEN (for PgBouncer transaction pooling).")
@click.option(
    "--handlers",
    "handlers_spec",
    help="module:object mapping kinds to handlers (default: the foreman_rt.handlers entry points).",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus metrics.")
@click.option(
    "--reap-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Leader's reaper period in seconds.",
)
@click.option(
    "--busy-wake-rate",
    type=click.FloatRange(min=0),
    default=500.0,
    show_default=True,
    help="Wake-ups per second from which a worker polls every --busy-poll-interval instead of "
    "asking inserts to notify it (0: never).",
)
@click.option(
    "--busy-poll-interval",
    type=click.FloatRange(min=0.001),
    default=0.005,
    show_default=True,
    help="Claim period in seconds while wake-ups come too fast.",
)
@click.option(
    "--leader-ttl",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    help="Seconds before a silent leader is replaced.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    envvar="FOREMAN_RETENTION_DAYS",
    help="Delete terminal jobs older than this (0 keeps them).",
)
@click.pass_obj
@handled
def worker(
    ctx: Context,
    queues: str | None,
    kinds: str | None,
    concurrency: int,
    processes: int,
    lease: float,
    poll_interval: float,
    shutdown_timeout: float,
    poll_only: bool,
    handlers_spec: str | None,
    metrics_port: int | None,
    reap_interval: float,
    busy_wake_rate: float,
    busy_poll_interval: float,
    leader_ttl: float,
    retention_days: int,
) -> None:
    """Run jobs: LISTEN for wake-ups, claim with SKIP LOCKED, run handlers."""
    from foreman_rt import registry
    from foreman_rt.worker.settings import WorkerSettings

    handlers = registry.from_spec(handlers_spec) if handlers_spec else registry.from_entry_points()
    wanted = _csv(kinds)
    if wanted is not None:
        missing = sorted(set(wanted) - set(handlers))
        if missing:
            raise ConfigurationError(
                f"no handler for kind(s) {', '.join(missing)}; installed: "
                f"{', '.join(sorted(handlers)) or 'none'}",
                code="unknown_kind",
            )
        handlers = {k: h for k, h in handlers.items() if k in wanted}
    settings = WorkerSettings(
        queues=_csv(queues),
        concurrency=concurrency,
        lease_seconds=lease,
        poll_interval=poll_interval,
        shutdown_timeout=shutdown_timeout,
        poll_only=poll_only,
        reap_interval=reap_interval,
        busy_wake_rate=busy_wake_rate,
        busy_poll_interval=busy_poll_interval,
        leader_ttl=leader_ttl,
        retention_days=retention_days,
    )
    dsn = ctx.resolve()
    if processes > 1:
        _supervise(ctx, dsn, processes, metrics_port)
    _run_worker(dsn, ctx.schema, handlers, settings, metrics_port)


def _supervise(ctx: Context, dsn: str, processes: int, metrics_port: int | None) -> NoReturn:
    """Replace this process with the standard-library-only supervisor (same pid), so it does not
    carry the CLI's imports (about 30 MB) for as long as the workers run."""
    import os

    from foreman_rt.worker import supervisor

    base = ["--dsn", dsn, "--schema", ctx.schema, *_strip_options(sys.argv[1:])]
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, supervisor.exec_argv(processes, base, metrics_port, level))


def _strip_options(argv: list[str]) -> list[str]:
    """The worker's own options without --processes, --metrics-port and global options."""
    out: list[str] = []
    skip = {"--processes", "--metrics-port", "--dsn", "--schema"}
    it = iter(argv)
    for arg in it:
        name = arg.split("=", 1)[0]
        if name in skip:
            if "=" not in arg:
                next(it, None)
            continue
        out.append(arg)
    return out


def _run_worker(
    dsn: str, schema: str, handlers: Any, settings: Any, metrics_port: int | None
) -> NoReturn:
    import gc
    import os
    import signal
    import threading

    from foreman_rt.worker import Worker

    w = Worker(dsn, handlers, schema=schema, settings=settings)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=w.metrics.registry)

    async def go() -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.stop)
        await w.run()

    # What is loaded by now (modules, handlers, settings) lives as long as the process: keep it
    # out of the cyclic collector's passes, which otherwise walk all of it every few thousand
    # jobs (about 1 us per job in a drain, and pauses of 10-35 ms). Collect first, so that
    # no garbage made while loading is kept for good.
    gc.collect()
    gc.freeze()
    try:
        aio.run(go())
    except ForemanError as exc:
        fail(exc)
    except Exception as exc:
        logging.getLogger("foreman_rt.worker").exception("worker crashed: %s", exc)
        sys.stderr.flush()
        os._exit(EXIT_DATABASE)
    if any(t.name.startswith("foreman-rt-handler") and t.is_alive() for t in threading.enumerate()):
        logging.getLogger("foreman_rt.worker").warning(
            "sync handlers still running after shutdown; their jobs were handed back; exiting"
        )
        sys.stderr.flush()
        os._exit(EXIT_OK)
    sys.exit(EXIT_OK)


from foreman_rt import cli_service as _cli_service  # noqa: E402  (registers api and keys)

__all__ = ["Context", "_cli_service", "main"]
