"""Classifying database errors: which ones are worth retrying (the connection or server went
away, a serialization failure) and which are bugs."""

from __future__ import annotations

import asyncpg

_RETRY_STATES = ("08", "57", "40", "53")  # connection, operator intervention, rollback, resources


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure: lost connections, restarts, deadlocks, timeouts."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    if isinstance(
        exc,
        asyncpg.exceptions.InterfaceError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        # A pooled connection the server terminated while idle fails its next query with
        # "cannot switch to state ..." before asyncpg marks it closed; the pool replaces it.
        | asyncpg.exceptions.InternalClientError,
    ):
        return True
    from foreman_rt.errors import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, asyncpg.PostgresError) and state[:2] in _RETRY_STATES:
        return True
    return state == "25006"  # read-only transaction: a failover or a read-only database
