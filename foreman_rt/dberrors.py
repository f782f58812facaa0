"""Classifying database errors, in one place: which mean the connection is gone, which a retry
may cure, and what each means for a caller (a ForemanError with a stable code, docs/errors.md),
so neither the client nor the HTTP API leaks a raw driver exception for a timeout, a read-only
server or a lost connection."""

from __future__ import annotations

from typing import Protocol

import asyncpg

from foreman_rt.errors import DatabaseUnavailable, ForemanError, InvalidInput

# SQLSTATE: (code, what happened and what to do). Each one means the statement was rolled back.
_BY_STATE = {
    "55P03": (
        "database_lock_timeout",
        "a lock wait ran past the server's lock_timeout; nothing was written, retry later",
    ),
    "57014": (
        "database_statement_timeout",
        "the statement ran past the server's statement_timeout (or was cancelled); nothing was "
        "written, retry later",
    ),
    "25006": (
        "database_read_only",
        "the database is read-only (a standby, a failover, or default_transaction_read_only); "
        "nothing was written, retry once it accepts writes",
    ),
    "53100": (
        "database_disk_full",
        "the database server's disk is full; nothing was written, free space and retry",
    ),
    "40001": (
        "database_conflict",
        "a serialization failure rolled the statement back; nothing was written, retry",
    ),
    "40P01": (
        "database_conflict",
        "a deadlock rolled the statement back; nothing was written, retry",
    ),
}
# Statements safe to repeat at once: the server rolled them back and the cause is transient.
RETRY_AT_ONCE = frozenset({"40001", "40P01"})

_LOST = (
    OSError,
    TimeoutError,
    ConnectionError,
    asyncpg.exceptions.InterfaceError,
    # A pooled connection the server terminated while idle fails its next query with
    # "cannot switch to state ..." before asyncpg marks it closed; the pool replaces it.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)
DRIVER_ERRORS = (asyncpg.PostgresError, *_LOST)  # every class translate() may map
_LOST_STATES = ("08", "57")  # connection exception, operator intervention (shutdown, restart)
_RETRY_STATES = ("40", "53")  # rolled back (serialization, deadlock), insufficient resources


def _sqlstate(exc: BaseException) -> str:
    return (exc.sqlstate or "") if isinstance(exc, asyncpg.PostgresError) else ""


def connection_lost(exc: BaseException) -> bool:
    """True when the connection or the server went away (or could not be reached)."""
    return isinstance(exc, (*_LOST, DatabaseUnavailable)) or _sqlstate(exc)[:2] in _LOST_STATES


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure: lost connections, restarts, deadlocks, timeouts,
    resources, a read-only database (a failover)."""
    if connection_lost(exc):
        return True
    state = _sqlstate(exc)
    return state[:2] in _RETRY_STATES or state == "25006"


def translate(exc: BaseException) -> ForemanError | None:
    """The ForemanError that `exc` means for a caller, or None when it is a bug to report."""
    if isinstance(exc, ForemanError):
        return exc
    if isinstance(exc, _LOST):
        return DatabaseUnavailable(f"lost the database connection: {exc}")
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    state = exc.sqlstate or ""
    known = _BY_STATE.get(state)
    if known is not None:
        code, message = known
        return DatabaseUnavailable(f"{message} ({exc})", code=code, sqlstate=state)
    if state[:2] in (*_LOST_STATES, "53"):  # connection, operator intervention, resources
        return DatabaseUnavailable(f"database unavailable: {exc}", sqlstate=state)
    if state[:2] == "22":  # data exception: a value PostgreSQL will not store
        return InvalidInput(f"the database rejected a value: {exc}", code="invalid_value")
    return None


def retry_at_once(exc: BaseException) -> bool:
    """True for errors where repeating the same single statement at once is safe and useful."""
    return isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "") in RETRY_AT_ONCE


class Sessions(Protocol):
    """Something holding database sessions it can replace: an asyncpg pool, a client's lane."""

    async def expire_connections(self) -> None:
        """Replace every session: idle ones now, busy ones when their statement ends."""


async def recover(exc: BaseException, *holders: Sessions) -> None:
    """After a read-only error, drop the sessions of every holder given: a session keeps the
    read-only default it started with, so only new sessions see the database accept writes."""
    if getattr(exc, "sqlstate", None) == "25006":
        for holder in holders:
            await holder.expire_connections()
