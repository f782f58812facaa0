"""JobContext's cancel event is made on first use and is one object for every thread."""

from __future__ import annotations

import threading

import pytest

from foreman_rt import JobContext
from foreman_rt.handlers import Cancelled


def _ctx() -> JobContext:
    return JobContext(job_id=1, run_id=1, kind="k", queue="default", tenant="default",
                      attempt=1, max_attempts=3)  # fmt: skip


def test_not_cancelled_until_the_event_is_set() -> None:
    ctx = _ctx()
    assert not ctx.cancelled
    ctx.raise_if_cancelled()
    ctx.cancel_event.set()
    assert ctx.cancelled
    with pytest.raises(Cancelled):
        ctx.raise_if_cancelled()


def test_threads_asking_first_at_once_share_one_event() -> None:
    for _ in range(200):
        ctx = _ctx()
        seen: list[threading.Event] = []
        gate = threading.Barrier(8)

        def ask(
            ctx: JobContext = ctx,
            seen: list[threading.Event] = seen,
            gate: threading.Barrier = gate,
        ) -> None:
            gate.wait()
            seen.append(ctx.cancel_event)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(e) for e in seen}) == 1
        ctx.cancel_event.set()
        assert all(e.is_set() for e in seen)
