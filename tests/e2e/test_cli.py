"""The foreman-rt command, run as a real subprocess against the session's PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

FOREMAN = Path(sys.executable).parent / "foreman-rt"
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DATABASE, EXIT_TIMEOUT = range(6)


def run(*args: str, code: int = EXIT_OK) -> subprocess.CompletedProcess[str]:
    """Run foreman-rt with `args`; assert its exit code."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"FOREMAN_DSN", "DATABASE_URL", "FOREMAN_SCHEMA"}
    }
    proc = subprocess.run(
        [str(FOREMAN), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == code, (
        f"foreman-rt {' '.join(args)} exited {proc.returncode}, expected {code}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc


class Cli:
    """foreman-rt bound to one DSN and schema."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    def __call__(self, *args: str, code: int = EXIT_OK) -> subprocess.CompletedProcess[str]:
        return run("--dsn", self.dsn, "--schema", self.schema, *args, code=code)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--output", "json").stdout)


def assert_one_clear_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def cli(pg_dsn: str, schema: str) -> Cli:
    """The CLI on the test's migrated schema."""
    return Cli(pg_dsn, schema)


@pytest.fixture
def fresh_cli(pg_dsn: str) -> Iterator[Cli]:
    """The CLI on a schema that does not exist yet (dropped afterwards)."""
    tool = Cli(pg_dsn, "c_" + secrets.token_hex(6))
    yield tool
    import asyncpg

    from foreman_rt import aio

    async def drop() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{tool.schema}" CASCADE')
        finally:
            await conn.close()

    aio.run(drop())


def test_migrate_applies_then_is_up_to_date(fresh_cli: Cli) -> None:
    first = fresh_cli("migrate")
    assert "applied 0001_init" in first.stdout
    second = fresh_cli("migrate")
    assert "applied" not in second.stdout
    assert "up to date" in second.stdout


def test_migrate_dry_run_on_unmigrated_schema_prints_sql_and_changes_nothing(
    fresh_cli: Cli,
) -> None:
    dry = fresh_cli("migrate", "--dry-run")
    assert "-- 0001_init.sql" in dry.stdout
    assert "CREATE TABLE jobs" in dry.stdout
    assert "pending  0001_init" in fresh_cli("migrate", "status").stdout


def test_migrate_status_lists_applied_migrations(cli: Cli) -> None:
    out = cli("migrate", "status").stdout
    assert out.startswith("applied  0001_init")
    assert "pending" not in out


def test_enqueue_json_gives_string_id_and_created_flag(cli: Cli) -> None:
    first = cli.json(
        "enqueue", "send-email", "--params", '{"to":"a@b.c"}', "--idempotency-key", "k1"
    )
    assert isinstance(first["id"], str)
    assert first["created"] is True
    assert first["params"] == {"to": "a@b.c"}
    assert first["status"] == "pending"
    second = cli.json("enqueue", "send-email", "--idempotency-key", "k1")
    assert second["created"] is False
    assert second["id"] == first["id"]


def test_jobs_list_show_runs_cancel(cli: Cli) -> None:
    a = cli.json("enqueue", "one", "--queue", "q1")
    b = cli.json("enqueue", "two", "--priority", "3")
    listed = cli.json("jobs", "list")
    assert [j["id"] for j in listed["jobs"]] == [b["id"], a["id"]]
    assert listed["next_cursor"] is None
    assert [j["id"] for j in cli.json("jobs", "list", "--kind", "one")["jobs"]] == [a["id"]]

    shown = cli.json("jobs", "show", a["id"])
    assert (shown["id"], shown["kind"], shown["queue"]) == (a["id"], "one", "q1")
    assert "one" in cli("jobs", "show", a["id"]).stdout
    assert cli.json("jobs", "runs", a["id"]) == []

    cancelled = cli.json("jobs", "cancel", a["id"])
    assert cancelled["status"] == "cancelled"
    assert cli.json("jobs", "show", a["id"])["status"] == "cancelled"
    assert cli.json("jobs", "retry", a["id"])["status"] == "pending"


def test_jobs_show_unknown_id_exits_3_with_one_line(cli: Cli) -> None:
    proc = cli("jobs", "show", "987654321", code=EXIT_NOT_FOUND)
    assert "job_not_found" in assert_one_clear_error_line(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "code_name"),
    [
        (("enqueue", "k", "--params", "not json"), "invalid_params"),
        (("enqueue", ""), "invalid_kind"),
        (("enqueue", "k", "--max-attempts", "0"), "invalid_max_attempts"),
        (("jobs", "show", "abc"), "invalid_job_id"),
    ],
    ids=["params-not-json", "empty-kind", "max-attempts-zero", "bad-id"],
)
def test_invalid_input_exits_2_with_one_line(
    cli: Cli, args: tuple[str, ...], code_name: str
) -> None:
    proc = cli(*args, code=EXIT_USAGE)
    assert code_name in assert_one_clear_error_line(proc)


def test_bad_schema_name_exits_nonzero_with_one_clear_line(pg_dsn: str) -> None:
    proc = run("--dsn", pg_dsn, "--schema", "Bad-Name", "jobs", "list", code=EXIT_DATABASE)
    line = assert_one_clear_error_line(proc)
    assert "Bad-Name" in line
    assert "invalid_schema" in line


def test_unmigrated_schema_exits_4_with_hint(fresh_cli: Cli) -> None:
    proc = fresh_cli("jobs", "list", code=EXIT_DATABASE)
    assert "foreman-rt migrate" in assert_one_clear_error_line(proc)


def test_enqueue_wait_on_job_nobody_runs_exits_5(cli: Cli) -> None:
    proc = cli("enqueue", "nobody-runs-this", "--wait", "--timeout", "0.5", code=EXIT_TIMEOUT)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # INFO logs of the wait listener come first
    assert last.startswith("error: ")
    assert "wait_timeout" in last


def test_db_url_prints_the_given_dsn(pg_dsn: str) -> None:
    assert run("--dsn", pg_dsn, "db", "url").stdout.strip() == pg_dsn
