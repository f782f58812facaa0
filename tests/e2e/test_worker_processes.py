"""Real `foreman-rt worker` processes against a real PostgreSQL: a 3-process supervisor draining
5,000 jobs exactly once and stopping on SIGTERM, a SIGKILLed worker whose job is reaped and
finished elsewhere (with late writes from the dead attempt rejected), and a bad --handlers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from foreman_rt import Client, db
from foreman_rt.arrays import id_array
from foreman_rt.sql import query

pytestmark = [pytest.mark.db, pytest.mark.e2e]

E2E_DIR = Path(__file__).resolve().parent
HANDLERS_SPEC = "worker_proc_handlers:HANDLERS"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(E2E_DIR), env.get("PYTHONPATH")) if p)
    env.pop("FOREMAN_DSN", None)
    env.pop("DATABASE_URL", None)
    return env


class Proc:
    """One started process (in its own session) and its combined output file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)


class Procs:
    """Starts `foreman-rt worker` processes on one schema; kills leftovers at teardown."""

    def __init__(self, dsn: str, schema: str, tmp: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.tmp = tmp
        self.started: list[Proc] = []

    def worker(self, name: str, *options: str) -> Proc:
        log = self.tmp / f"{name}.log"
        argv = [
            sys.executable,
            "-m",
            "foreman_rt",
            "--dsn",
            self.dsn,
            "--schema",
            self.schema,
            "worker",
            "--handlers",
            HANDLERS_SPEC,
            *options,
        ]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
            )
        proc = Proc(popen, log)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            # Each process leads its own session (and process group): this reaches a
            # supervisor's children too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.popen.wait(5)


@pytest.fixture
def procs(pg_dsn: str, schema: str, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(pg_dsn, schema, tmp_path)
    try:
        yield p
    finally:
        p.kill_all()


async def wait_until(check: Callable[[], Awaitable[Any]], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.05)


async def wait_logged(proc: Proc, needle: str, times: int = 1, timeout: float = 20.0) -> None:
    async def check() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"process exited with {proc.popen.returncode}:\n{proc.text()}")
        return proc.count(needle) >= times

    await wait_until(check, f"{times}x {needle!r} in the log", timeout)


async def test_three_processes_drain_5000_jobs_exactly_once_then_stop_on_sigterm(
    procs: Procs, schema: str, client: Client, conn: db.Connection
) -> None:
    sup = procs.worker("supervisor", "--processes", "3", "--concurrency", "32")
    await wait_logged(sup, f"listening on {schema}_wake", times=3)
    # The CLI replaced itself with the standard-library-only supervisor (same pid): no driver,
    # no pydantic, loaded in the process that only watches its children.
    maps = Path(f"/proc/{sup.popen.pid}/maps").read_text()
    assert "supervisor.py" in Path(f"/proc/{sup.popen.pid}/cmdline").read_text()
    assert "asyncpg" not in maps and "pydantic_core" not in maps
    # Its workers load the driver but not pydantic: these handlers take plain JSON params.
    children = Path(f"/proc/{sup.popen.pid}/task/{sup.popen.pid}/children").read_text().split()
    assert len(children) == 3
    for child in children:
        child_maps = Path(f"/proc/{child}/maps").read_text()
        assert "asyncpg" in child_maps and "pydantic_core" not in child_maps

    started = time.monotonic()
    await client.enqueue_many({"kind": "echo", "params": {"n": i}} for i in range(5000))

    async def drained() -> bool:
        return await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'") == 5000

    await wait_until(drained, "5,000 succeeded jobs", timeout=60)
    elapsed = time.monotonic() - started
    print(f"\n5,000 jobs drained by 3 processes in {elapsed:.2f}s ({5000 / elapsed:.0f} jobs/s)")

    # Exactly one run per job, and it is the succeeded one; results belong to their job.
    bad = await conn.fetch(
        """
        SELECT j.id, j.attempt_count, count(r.id) AS runs,
               count(r.id) FILTER (WHERE r.status = 'succeeded') AS succeeded
        FROM jobs AS j LEFT JOIN job_runs AS r ON r.job_id = j.id
        GROUP BY j.id
        HAVING count(r.id) <> 1 OR count(r.id) FILTER (WHERE r.status = 'succeeded') <> 1
            OR j.attempt_count <> 1
        """
    )
    assert [dict(r) for r in bad] == []
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM job_runs GROUP BY job_id, status HAVING count(*) > 1 LIMIT 1"
        )
        is None
    )
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE result->'n' <> params->'n'") == 0
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM job_runs AS r JOIN jobs AS j ON j.id = r.job_id"
            " WHERE r.result IS DISTINCT FROM j.result"
        )
        == 0
    )
    workers = await conn.fetchval("SELECT count(DISTINCT worker_id) FROM job_runs")
    pids = await conn.fetchval("SELECT count(DISTINCT result->>'pid') FROM jobs")
    assert workers == pids == 3, (workers, pids)

    sup.popen.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0, sup.text()
    out = sup.text()
    assert len(re.findall(r"worker \S+ stopped", out)) == 3, out
    assert "Traceback" not in out
    # Graceful: the leader resigned, nothing is left running.
    assert await conn.fetchval("SELECT count(*) FROM leaders") == 0
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE status = 'running'") == 0


async def test_sigkilled_worker_job_is_reaped_and_finished_by_another_and_late_writes_change_nothing(
    procs: Procs, client: Client, conn: db.Connection
) -> None:
    fast = ("--lease", "2", "--leader-ttl", "2", "--reap-interval", "0.2", "--concurrency", "4")
    first = procs.worker("first", *fast)
    await wait_logged(first, "listening on")
    job = (await client.enqueue("stall-first", {"seconds": 30}, backoff=(0.05, 0.1))).job

    async def running_run() -> Any:
        return await conn.fetchrow(
            "SELECT * FROM job_runs WHERE job_id = $1 AND status = 'running'", job.id
        )

    old = await wait_until(running_run, "the first attempt to start", timeout=10)
    assert old["attempt"] == 1

    second = procs.worker("second", *fast)
    await wait_logged(second, "listening on")
    first.popen.send_signal(signal.SIGKILL)
    assert first.wait(5) == -signal.SIGKILL
    killed_at = time.monotonic()

    async def succeeded() -> bool:
        return await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job.id) == "succeeded"

    await wait_until(succeeded, "the job to be finished by the second worker", timeout=15)
    print(f"\nSIGKILL to completion elsewhere: {time.monotonic() - killed_at:.2f}s (lease 2 s)")

    runs = await conn.fetch("SELECT * FROM job_runs WHERE job_id = $1 ORDER BY attempt", job.id)
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "abandoned"), (2, "succeeded")]
    assert runs[0]["id"] == old["id"] and runs[0]["worker_id"] == old["worker_id"]
    assert runs[0]["error"] == "lease expired"
    assert runs[1]["worker_id"] != old["worker_id"]
    job_before = dict(await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job.id))
    assert job_before["attempt_count"] == 2 and job_before["result"]["attempt"] == 2
    assert job_before["result"]["pid"] == second.popen.pid

    # The dead attempt's heartbeat, completion and failure arrive late: nothing matches.
    runs_before = [dict(r) for r in runs]
    assert (
        await conn.fetch(query("heartbeat"), id_array([old["id"]]), 30.0, [9], [10], ["late"]) == []
    )
    late = (query("complete_batch"), id_array([old["id"]]), '[{"late": true}]', None, None, None)
    assert await conn.fetch(*late) == []
    assert (
        await conn.fetch(query("fail_batch"), id_array([old["id"]]), ["failed"], ["late"], [0.0])
        == []
    )
    assert dict(await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job.id)) == job_before
    after = await conn.fetch("SELECT * FROM job_runs WHERE job_id = $1 ORDER BY attempt", job.id)
    assert [dict(r) for r in after] == runs_before

    second.popen.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0, second.text()


def test_worker_with_unimportable_handlers_exits_with_one_line(pg_dsn: str, schema: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "foreman_rt",
            "--dsn",
            pg_dsn,
            "--schema",
            schema,
            "worker",
            "--handlers",
            "nosuch.module:X",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 4, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "[handler_import_failed]" in lines[0]
    assert "nosuch" in lines[0] and "Traceback" not in done.stderr
