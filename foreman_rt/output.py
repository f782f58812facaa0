"""Rendering for the CLI: stable JSON for scripts, aligned tables for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foreman_rt.jobs import Job, Run

JOB_COLUMNS = ("id", "kind", "queue", "status", "attempt_count", "max_attempts", "enqueued_at")
RUN_COLUMNS = ("id", "attempt", "worker_id", "status", "started_at", "finished_at", "error")


def to_json(value: Any) -> str:
    """Indented JSON with sorted keys (stable for scripts)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """An aligned text table; long cells are cut at 40 characters."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def job_detail(job: Job) -> str:
    """A job as 'field  value' lines."""
    data = job.to_json()
    width = max(len(k) for k in data)
    return "\n".join(
        f"{k.ljust(width)}  {_cell(v) if k != 'params' else json.dumps(v)}" for k, v in data.items()
    )


def jobs_table(jobs: Sequence[Job]) -> str:
    """Jobs as a table."""
    return table([j.to_json() for j in jobs], JOB_COLUMNS)


def runs_table(runs: Sequence[Run]) -> str:
    """Runs as a table."""
    return table([r.to_json() for r in runs], RUN_COLUMNS)
