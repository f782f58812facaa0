"""Finding a real PostgreSQL for the tests: FOREMAN_TEST_DSN, else Docker through
testcontainers when an engine answers, else an embedded PostgreSQL in a temporary directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:18-alpine", driver=None) as pg:
        yield pg.get_connection_url()


@contextlib.contextmanager
def _embedded() -> Iterator[str]:
    from foreman_rt import embedded

    root = Path(tempfile.mkdtemp(prefix="foreman-test-"))
    os.chmod(root, 0o755)
    pgdata = root / "pgdata"
    try:
        yield embedded.start(pgdata)
    finally:
        with contextlib.suppress(Exception):
            embedded.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, str]]:
    """Yield (dsn, source) for the session's PostgreSQL."""
    dsn = os.environ.get("FOREMAN_TEST_DSN", "").strip()
    if dsn:
        yield dsn, "FOREMAN_TEST_DSN"
    elif _docker_answers():
        with _container() as url:
            yield url, "testcontainers"
    else:
        with _embedded() as url:
            yield url, "embedded"
