"""Settings: one frozen object; environment variables are read only here and in the CLI."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from foreman_rt.errors import ConfigurationError

DEFAULT_SCHEMA = "foreman"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
DSN_ENV_VARS = ("FOREMAN_DSN", "DATABASE_URL")


def validate_schema(name: str) -> str:
    """Return `name` if it is a safe schema identifier (lower-case, digits, _; ≤ 40 chars)."""
    if not isinstance(name, str) or not _SCHEMA_RE.fullmatch(name) or name.startswith("pg_"):
        raise ConfigurationError(
            f"invalid schema name {name!r}: use 1-40 lower-case letters, digits or '_', "
            "starting with a letter or '_' (and not 'pg_')",
            code="invalid_schema",
        )
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier that `validate_schema` already accepted."""
    return '"' + validate_schema(name) + '"'


def dsn_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The DSN from FOREMAN_DSN or DATABASE_URL, or None for the embedded default."""
    env = os.environ if environ is None else environ
    for var in DSN_ENV_VARS:
        value = env.get(var, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Channels:
    """The NOTIFY channel names of one schema (see docs/notifications.md)."""

    wake: str
    events: str
    cancel: str

    @classmethod
    def for_schema(cls, schema: str) -> Channels:
        """Channel names for `schema`: <schema>_wake, <schema>_events, <schema>_cancel."""
        validate_schema(schema)
        return cls(wake=f"{schema}_wake", events=f"{schema}_events", cancel=f"{schema}_cancel")
