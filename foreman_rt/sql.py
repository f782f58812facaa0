"""The named SQL statements under sql/queries and the migrations under sql/migrations."""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from foreman_rt.config import quote_ident


def sql_root() -> Traversable:
    """The sql/ folder: inside the installed wheel, or at the top of a source checkout."""
    packaged = resources.files("foreman_rt") / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


@functools.cache
def query(name: str) -> str:
    """The text of sql/queries/<name>.sql, read once."""
    return (sql_root() / "queries" / f"{name}.sql").read_text(encoding="utf-8")


@functools.cache
def query_in(name: str, schema: str) -> str:
    """A query whose names are qualified with `{schema}`, filled with the validated schema."""
    return query(name).replace("{schema}", quote_ident(schema))
