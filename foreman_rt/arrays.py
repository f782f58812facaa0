"""Array parameters for the statements that write many runs at once (completions, failures,
heartbeats), in the forms that cost least to send. asyncpg encodes a Python list element by
element, with type checks on each, at about 0.4 us per element; a worker sends one run id per
finished job, so ids go as array text and results as one JSON array."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def id_array(ids: Iterable[int]) -> str:
    """Integer ids as PostgreSQL array text, for a `$n::text::bigint[]` parameter."""
    return "{" + ",".join([str(int(i)) for i in ids]) + "}"


def json_array(texts: Iterable[str]) -> str:
    """JSON texts, each exactly one JSON value, as one JSON array for
    `jsonb_array_elements($n::jsonb)` (a text holding no value or two would shift the rest)."""
    return "[" + ",".join(texts) + "]"


def column(values: Sequence[T | None]) -> list[T | None] | None:
    """The values as a list, or None when all are None (the statement then reads NULLs)."""
    if all(v is None for v in values):
        return None
    return list(values)
