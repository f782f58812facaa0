"""Parsing of NOTIFY payloads (formats in docs/notifications.md): pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Wake:
    """An insert notification: (queue, kind, count, seconds until due or None) groups;
    `everything` on overflow."""

    groups: tuple[tuple[str, str, int, float | None], ...] = ()
    everything: bool = False

    def concerns(self, queues: frozenset[str] | None, kinds: frozenset[str]) -> bool:
        """True when a worker on these queues (None: all) and kinds should try to claim."""
        if self.everything:
            return True
        return any((queues is None or q in queues) and k in kinds for q, k, _n, _d in self.groups)

    def earliest_due(self, queues: frozenset[str] | None, kinds: frozenset[str]) -> float | None:
        """Seconds until the earliest delayed job for these queues and kinds (None: none)."""
        dues = [
            d
            for q, k, _n, d in self.groups
            if d is not None and (queues is None or q in queues) and k in kinds
        ]
        return min(dues) if dues else None


@dataclass(frozen=True, slots=True)
class Events:
    """A state-change notification: per-(kind, queue, status) counts, changed jobs, progress."""

    counts: tuple[tuple[str, str, str, int], ...] = ()
    jobs: tuple[tuple[int, str], ...] = ()
    progress: tuple[int, ...] = ()
    overflow: bool = False
    ids: frozenset[int] = field(default_factory=frozenset)


def parse_wake(payload: str) -> Wake:
    """Parse a <schema>_wake payload; anything unreadable counts as 'wake everyone'."""
    try:
        data = json.loads(payload)
        if data == "*":
            return Wake(everything=True)
        return Wake(groups=tuple(_group(g) for g in data))
    except (ValueError, TypeError, RecursionError):
        return Wake(everything=True)


def _group(g: list[Any]) -> tuple[str, str, int, float | None]:
    """[queue, kind, count] (schema 1) or [queue, kind, count, due] (schema 3 on)."""
    if not 3 <= len(g) <= 4:
        raise ValueError("a wake group has 3 or 4 items")
    due = g[3] if len(g) == 4 else None
    return str(g[0]), str(g[1]), int(g[2]), None if due is None else float(due)


def parse_events(payload: str) -> Events:
    """Parse a <schema>_events payload; anything unreadable counts as an overflow."""
    try:
        data = json.loads(payload)
        counts = tuple((str(k), str(q), str(s), int(n)) for k, q, s, n in data.get("c", ()))
        jobs = tuple((int(i), str(s)) for i, s in data.get("j", ()))
        progress = tuple(int(i) for i in data.get("p", ()))
        ids = frozenset(i for i, _s in jobs) | frozenset(progress)
        return Events(counts, jobs, progress, bool(data.get("o", False)), ids)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return Events(overflow=True)


def parse_cancel(payload: str) -> frozenset[int] | None:
    """Job ids from a <schema>_cancel payload; None means 'overflow: check every job'."""
    if payload == "*":
        return None
    try:
        return frozenset(int(part) for part in payload.split(",") if part)
    except ValueError:
        return None
