"""Database-side errors, each on a database of the scenario's own (a scratch database on the
test server, so FOREMAN_TEST_DSN works too, or a private cluster):

- statement_timeout and lock_timeout set for the database's sessions (ALTER DATABASE … SET),
  hit while enqueueing because another session holds ACCESS EXCLUSIVE on <schema>.jobs: through
  the Client's pool, through `connection=` inside the caller's transaction, and through
  `foreman-rt api`. Nothing may be half-written, and the error must be usable: the pool path
  and the API are foreman-rt's to translate (a ForemanError with a code; a 503 with a code and
  Retry-After), while `connection=` hands the caller's own asyncpg error back unchanged, since
  the caller owns that transaction and its retry loop.
- A read-only database (default_transaction_read_only, backends terminated so sessions pick it
  up) while a worker and the API run: enqueue fails with a clear error, the worker keeps
  running and retrying; when read-only is lifted everything completes without a reconnect by
  hand (a read-only error makes the worker drop its pooled sessions, and new sessions take the
  writable default), and no run is left running without a lease.
- Serialization failures and deadlocks: foreman-rt never asks for SERIALIZABLE or
  REPEATABLE READ, so 40001/40P01 cannot arise by themselves. They are injected by triggers
  that raise them at random in the workers' own sessions (application_name), on every write
  the worker makes (claim, heartbeat, completion, failure, reaper, leader election).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from harness import (
    check_invariants,
    cluster,
    fresh_schema,
    processes,
    record_result,
    scale,
    wait_until_terminal,
)
from support import (
    alter_database,
    client_for,
    scratch_database,
    start_api,
    terminate_backends,
    wait_for,
)

from foreman_rt import Client, ForemanError, JobSpec, db

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(int(scale(240, 900)))]

TIMEOUT = "300ms"
API_CODES = {  # docs/errors.md, DatabaseUnavailable
    "database_unavailable",
    "database_lock_timeout",
    "database_statement_timeout",
    "database_read_only",
}


def describe(exc: BaseException | None) -> dict[str, Any]:
    """What an error looks like to the caller."""
    if exc is None:
        return {"type": None}
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "code": getattr(exc, "code", None),
        "sqlstate": getattr(exc, "sqlstate", None),
        "message": str(exc).splitlines()[0][:120],
    }


async def counts(conn: asyncpg.Connection, schema: str) -> tuple[int, int]:
    """(jobs, job_runs) rows in `schema`."""
    row = await conn.fetchrow(
        f'SELECT (SELECT count(*) FROM "{schema}".jobs), (SELECT count(*) FROM "{schema}".job_runs)'
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def api_enqueue(http: httpx.AsyncClient, key: str) -> tuple[int, dict[str, Any], str]:
    """POST one job: status, body, Retry-After."""
    reply = await http.post("/foreman/jobs", json={"kind": "rel.work", "idempotency_key": key})
    return reply.status_code, reply.json(), reply.headers.get("retry-after", "")


@pytest.mark.parametrize(
    ("setting", "sqlstate"), [("lock_timeout", "55P03"), ("statement_timeout", "57014")]
)
async def test_enqueue_hits_a_server_side_timeout(
    setting: str, sqlstate: str, tmp_path: Path
) -> None:
    schema = "chaos_timeouts"
    with cluster() as c:
        async with scratch_database(c.dsn) as dsn:
            await fresh_schema(dsn, schema)
            admin = await asyncpg.connect(c.dsn)
            await alter_database(admin, dsn, setting, TIMEOUT)
            client = await Client.connect(dsn, schema)
            holder = await asyncpg.connect(dsn)
            own = await asyncpg.connect(dsn)
            try:
                assert await client.pool.fetchval(f"SHOW {setting}") == TIMEOUT
                with processes(dsn, schema) as procs:
                    api = await start_api(procs, output=tmp_path / "api.log")
                    async with httpx.AsyncClient(base_url=api.base, timeout=30.0) as http:
                        before = await counts(holder, schema)
                        lock = holder.transaction()
                        await lock.start()
                        await holder.execute(f'LOCK TABLE "{schema}".jobs IN ACCESS EXCLUSIVE MODE')

                        pool_exc: BaseException | None = None
                        started = time.monotonic()
                        try:
                            await client.enqueue("rel.work", {"n": 1}, idempotency_key="pool")
                        except Exception as exc:
                            pool_exc = exc
                        pool_s = time.monotonic() - started

                        own_exc: BaseException | None = None
                        try:
                            async with own.transaction():
                                await own.execute("SELECT 1")
                                await client.enqueue(
                                    "rel.work", idempotency_key="own", connection=own
                                )
                        except Exception as exc:
                            own_exc = exc

                        status, body, retry_after = await api_enqueue(http, "api")
                        await lock.rollback()

                        after = await counts(own, schema)
                        # Everything works again once the lock is gone.
                        again = await client.enqueue("rel.work", idempotency_key="pool")
                        ok_status, _, _ = await api_enqueue(http, "api")
                    api_log = api.log()
            finally:
                await client.close()
                for conn in (holder, own, admin):
                    await conn.close()

    figures = {
        "client_pool": describe(pool_exc),
        "client_pool_s": round(pool_s, 2),
        "connection_arg": describe(own_exc),
        "api": {"status": status, "code": body.get("code"), "retry_after": retry_after},
    }
    record_result(f"db_errors_{setting}", figures)

    assert before == after, f"rows before {before}, after {after}: something was half-written"
    assert again.created and ok_status == 201, "enqueue did not work again after the lock"
    problems = []
    if pool_exc is None or pool_s > 10:
        problems.append(f"the pool enqueue did not time out promptly ({pool_s:.1f} s)")
    if not (isinstance(pool_exc, ForemanError) and pool_exc.code):
        problems.append(
            f"Client.enqueue (pool) raised {describe(pool_exc)} for a {setting}: a raw asyncpg "
            "error where a ForemanError with a code (e.g. DatabaseUnavailable) is expected"
        )
    if not (
        isinstance(own_exc, asyncpg.PostgresError) and own_exc.sqlstate == sqlstate
    ) and not isinstance(own_exc, ForemanError):
        problems.append(f"Client.enqueue(connection=) raised {describe(own_exc)}")
    if status != 503 or body.get("code") not in API_CODES or not retry_after:
        problems.append(
            f"POST /foreman/jobs during a {setting} answered {status} {body} "
            f"(Retry-After {retry_after!r}); expected 503 with a database code and Retry-After"
        )
    if "Traceback" in api_log:
        problems.append("the API logged a traceback for it:\n" + api_log[-1500:])
    assert not problems, "\n".join(problems)


async def test_read_only_database_worker_waits_and_recovers(tmp_path: Path) -> None:
    schema = "chaos_readonly"
    jobs = int(scale(400, 4000))
    with cluster(own=True) as c:
        async with scratch_database(c.dsn) as dsn:
            await fresh_schema(dsn, schema)
            admin = await asyncpg.connect(c.dsn)  # on another database: never read-only
            probe = await db.connect(dsn, schema, application_name="chaos probe")
            probe_pid = probe.get_server_pid()
            try:
                with processes(dsn, schema) as procs:
                    worker = procs.start_worker(
                        "--concurrency",
                        "8",
                        "--lease",
                        "20",
                        "--poll-interval",
                        "1",
                        dsn=dsn,
                        output=tmp_path / "worker.log",
                    )
                    api = await start_api(procs, output=tmp_path / "api.log")
                    ids: list[int] = []
                    async with client_for(dsn, schema) as cl:
                        spec = JobSpec.build("rel.work", None, max_attempts=10)
                        ids += [e.id for e in await cl.enqueue_many([spec] * jobs)]

                    async def succeeded() -> int:
                        return int(
                            await probe.fetchval(
                                "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
                            )
                        )

                    await wait_for(lambda: _ge(succeeded, jobs // 4), 120, "a quarter done")

                    await alter_database(admin, dsn, "default_transaction_read_only", "on")
                    await terminate_backends(admin, dsn, keep=[probe_pid])
                    read_only_at = time.monotonic()
                    await asyncio.sleep(1.0)  # the worker and the API reconnect, read-only now
                    done_at_switch = await succeeded()

                    enqueue_exc: BaseException | None = None
                    async with client_for(dsn, schema) as cl:
                        try:
                            await cl.enqueue("rel.work", idempotency_key="while-read-only")
                        except Exception as exc:
                            enqueue_exc = exc
                    async with httpx.AsyncClient(base_url=api.base, timeout=30.0) as http:
                        status, body, retry_after = await api_enqueue(http, "ro-api")
                    while time.monotonic() - read_only_at < 5.0:
                        assert worker.poll() is None, "the worker died on a read-only database"
                        await asyncio.sleep(0.2)
                    done_read_only = await succeeded()

                    await alter_database(admin, dsn, "default_transaction_read_only", None)
                    writable_at = time.monotonic()
                    # No reconnect by hand: after a read-only error the worker drops its pooled
                    # sessions, so new ones pick up the writable default by themselves.
                    first_s = await wait_for(
                        lambda: _ge(succeeded, done_read_only + 1), 60, "a completion"
                    )
                    await wait_until_terminal(probe, len(ids), 120)
                    drain_s = time.monotonic() - writable_at
                    done_before_terminate = await succeeded()
                    await terminate_backends(admin, dsn, keep=[probe_pid])

                    async with httpx.AsyncClient(base_url=api.base, timeout=30.0) as http:
                        api_after = await _until_created(http)
                    async with client_for(dsn, schema) as cl:
                        ids.append((await cl.enqueue("rel.work", {"ms": 0})).job.id)
                    ids.append(api_after)
                    await wait_until_terminal(probe, len(ids), 60)
                    report = await check_invariants(probe, ids, procs.exec_dir)
                    assert worker.poll() is None, "the worker died"
                    assert api.proc.poll() is None, "the API died"
                    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
                    api_log = api.log()
            finally:
                await probe.close()
                await admin.close()

    figures = {
        "jobs": len(ids),
        "client_enqueue_error": describe(enqueue_exc),
        "api": {"status": status, "code": body.get("code"), "retry_after": retry_after},
        "succeeded_during_read_only": done_read_only - done_at_switch,
        "succeeded_after_reset": done_before_terminate - done_read_only,
        "first_completion_after_reset_s": round(first_s, 2),
        "drained_after_reset_s": round(drain_s, 2),
        "abandoned_runs": report.abandoned_runs,
        "extra_executions": report.extra_executions,
    }
    record_result("db_errors_read_only", figures)
    problems = []
    if not (isinstance(enqueue_exc, ForemanError) and enqueue_exc.code):
        problems.append(
            f"Client.enqueue on a read-only database raised {describe(enqueue_exc)}: a raw "
            "asyncpg error where a ForemanError with a code is expected"
        )
    if status != 503 or body.get("code") not in API_CODES or not retry_after:
        problems.append(f"POST /foreman/jobs on a read-only database answered {status} {body}")
    if "Traceback" in worker_log:
        problems.append("the worker logged a traceback:\n" + worker_log[-1500:])
    if "Traceback" in api_log:
        problems.append("the API logged a traceback for a 503:\n" + api_log[-1500:])
    assert not problems, "\n".join(problems)


INJECT = """
CREATE SEQUENCE chaos_injected;
CREATE FUNCTION chaos_inject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = 'foreman-rt worker' AND random() < {share} THEN
        PERFORM nextval('{schema}.chaos_injected');
        IF random() < 0.5 THEN
            RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
        END IF;
        RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_jobs BEFORE INSERT OR UPDATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION chaos_inject();
CREATE TRIGGER chaos_runs BEFORE INSERT OR UPDATE ON finished_runs
    FOR EACH STATEMENT EXECUTE FUNCTION chaos_inject();
CREATE TRIGGER chaos_leaders BEFORE INSERT OR UPDATE ON leaders
    FOR EACH STATEMENT EXECUTE FUNCTION chaos_inject();
"""


async def test_workers_survive_serialization_failures_and_deadlocks(tmp_path: Path) -> None:
    schema = "chaos_serial_" + secrets.token_hex(3)
    jobs = int(scale(600, 6000))
    with cluster() as c, processes(c.dsn, schema) as procs:
        await fresh_schema(c.dsn, schema)
        conn = await db.connect(c.dsn, schema)
        try:
            await conn.execute(INJECT.format(share=0.25, schema=schema))
            for i in range(2):
                procs.start_worker(
                    "--concurrency",
                    "16",
                    "--lease",
                    "5",
                    "--reap-interval",
                    "0.5",
                    "--leader-ttl",
                    "3",
                    output=tmp_path / f"worker{i}.log",
                )
            async with client_for(c.dsn, schema) as cl:
                spec = JobSpec.build("rel.work", None, max_attempts=25)
                ids = [e.id for e in await cl.enqueue_many([spec] * jobs)]
            started = time.monotonic()
            await wait_until_terminal(conn, jobs, scale(180, 900))
            drain_s = time.monotonic() - started
            injected = int(await conn.fetchval("SELECT last_value FROM chaos_injected"))
            assert len(procs.alive_workers()) == 2, "a worker died of an injected error"
            report = await check_invariants(conn, ids, procs.exec_dir)
            procs.stop_all()  # before the schema goes, or the workers fail on missing tables
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()
    assert injected > 10, f"only {injected} errors were injected"
    record_result(
        "db_errors_serialization",
        {
            "jobs": jobs,
            "injected_40001_40P01": injected,
            "drain_s": round(drain_s, 1),
            "abandoned_runs": report.abandoned_runs,
            "extra_executions": report.extra_executions,
        },
    )


async def _ge(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def _until_created(http: httpx.AsyncClient) -> int:
    """POST until a job is created (bounded); its id."""
    key = "after-" + secrets.token_hex(4)
    deadline = time.monotonic() + 60
    while True:
        status, body, _ = await api_enqueue(http, key)
        if status in (201, 409):
            return int((body if status == 201 else body["job"])["id"])
        assert time.monotonic() < deadline, f"the API still answers {status} {body}"
        await asyncio.sleep(0.2)
