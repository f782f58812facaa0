"""Renews every lease this process holds in one statement, at most a third of the lease apart
(sooner when a handler reports progress), and tells the runtime which attempts lost their lease
or were asked to cancel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from foreman_rt.arrays import column, id_array
from foreman_rt.db import Pool
from foreman_rt.dberrors import is_transient, recover
from foreman_rt.handlers import JobContext
from foreman_rt.sql import query

log = logging.getLogger("foreman_rt.worker.heartbeat")

PROGRESS_DEBOUNCE = 0.1


@dataclass(frozen=True, slots=True)
class Beat:
    """Which attempts were renewed, lost, or have a cancel request."""

    lost: frozenset[int]
    cancel: frozenset[int]


class Heartbeat:
    """The lease-renewal loop."""

    def __init__(
        self,
        pool: Pool,
        contexts: Callable[[], Iterable[JobContext]],
        on_beat: Callable[[Beat], None],
        *,
        lease_seconds: float,
        interval: float,
        finished: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self._pool = pool
        self._contexts = contexts
        self._finished = finished
        self._on_beat = on_beat
        self._lease = lease_seconds
        self._interval = interval
        self._soon = asyncio.Event()

    def soon(self) -> None:
        """Ask for an early heartbeat (progress changed). Loop thread only."""
        self._soon.set()

    async def run(self) -> None:
        """Beat every `interval`, or shortly after progress is reported."""
        wait = self._interval
        while True:
            try:
                async with asyncio.timeout(wait):  # not wait_for: it can swallow a cancel (3.11)
                    await self._soon.wait()
                await asyncio.sleep(PROGRESS_DEBOUNCE)
            except TimeoutError:
                pass
            self._soon.clear()
            try:
                await self.run_once()
                wait = self._interval
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await recover(exc, self._pool)
                log.warning("heartbeat failed (%s); retrying soon", exc)
                wait = min(1.0, self._interval / 3)

    async def run_once(self) -> Beat | None:
        """Renew every current lease now; None when there is nothing to renew. Runs that
        finished but whose outcome is not written yet keep their lease too (no progress)."""
        ctxs = list(self._contexts())
        finished = [] if self._finished is None else list(self._finished())
        if not ctxs and not finished:
            return None
        sent = [(c, c.progress_dirty) for c in ctxs]
        for c in ctxs:
            c.progress_dirty = False  # progress reported from now on goes in the next beat
        asked = [c.run_id for c in ctxs] + finished
        # Progress of the running attempts that reported some. The finished runs, last in
        # `asked`, send none: the statement pads shorter arrays with NULLs.
        current = [c.progress_current if dirty else None for c, dirty in sent]
        total = [c.progress_total if dirty else None for c, dirty in sent]
        message = [c.progress_message if dirty else None for c, dirty in sent]
        try:
            rows = await self._pool.fetch(
                query("heartbeat"),
                id_array(asked),
                self._lease,
                column(current),
                column(total),
                column(message),
            )
        except BaseException:
            for c, dirty in sent:
                c.progress_dirty = c.progress_dirty or dirty
            raise
        renewed = {r["run_id"]: r["cancel_requested"] for r in rows}
        beat = Beat(
            lost=frozenset(run for run in asked if run not in renewed),
            cancel=frozenset(run for run, flag in renewed.items() if flag),
        )
        self._on_beat(beat)
        return beat
