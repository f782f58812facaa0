"""Buffers handler outcomes and writes them in batches: one completion statement and one
failure statement per flush, a few milliseconds apart. Outcomes are kept until written, so a
lost connection delays them but never drops them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import asyncpg

from foreman_rt.arrays import column, id_array, json_array
from foreman_rt.db import Pool
from foreman_rt.dberrors import is_transient, recover
from foreman_rt.sql import query
from foreman_rt.values import clean_text
from foreman_rt.worker.metrics import WorkerMetrics
from foreman_rt.worker.outcome import Discard, Failed, Outcome, Succeeded

log = logging.getLogger("foreman_rt.worker.completer")

# Results (JSON text, ASCII) per completion statement; results are at most 1 MiB each.
RESULT_CHARS_PER_STATEMENT = 16 * 2**20
# Errors for values PostgreSQL will not store: the batch is then written one by one.
_REFUSED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


class Completer:
    """Collects outcomes and flushes them in batches."""

    def __init__(
        self,
        pool: Pool,
        metrics: WorkerMetrics,
        *,
        interval: float,
        max_batch: int,
        on_flushed: Callable[[bool], None] | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._interval = interval
        self._max = max_batch
        self._on_flushed = on_flushed
        self._succeeded: list[Succeeded] = []
        self._failed: list[Failed] = []
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()  # the run loop and drain() must not flush the same batch
        self._retrying = False  # after a failed flush a batch may already have been written

    def add(self, outcome: Outcome) -> None:
        """Queue one outcome for the next flush."""
        if isinstance(outcome, Succeeded):
            self._succeeded.append(outcome)
        elif isinstance(outcome, Failed):
            self._failed.append(outcome)
        elif isinstance(outcome, Discard):
            return
        self._ready.set()

    @property
    def pending(self) -> int:
        """Outcomes not yet written."""
        return len(self._succeeded) + len(self._failed)

    def buffered_runs(self) -> set[int]:
        """Run ids whose outcome is buffered and not yet written."""
        return {o.run_id for o in self._succeeded} | {o.run_id for o in self._failed}

    async def run(self) -> None:
        """Flush whenever outcomes arrive, batching those that come within `interval`."""
        backoff = 0.05
        while True:
            await self._ready.wait()
            if self.pending < self._max:
                await asyncio.sleep(self._interval)
            self._ready.clear()
            try:
                await self.run_once()
                backoff = 0.05
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await recover(exc, self._pool)
                log.warning("writing outcomes failed (%s); retrying in %.2fs", exc, backoff)
                self._ready.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def run_once(self) -> int:
        """Write everything buffered; returns how many outcomes were written."""
        async with self._lock:
            try:
                done = await self._flush()
            except BaseException:
                self._retrying = True
                raise
            self._retrying = False
            return done

    async def _flush(self) -> int:
        started = time.perf_counter()
        done = 0
        retried = False
        if self._succeeded:
            batch = self._next_completions()
            await self._complete(batch)
            del self._succeeded[: len(batch)]
            done += len(batch)
        if self._failed:
            fails = self._failed[: self._max]
            await self._fail(fails)
            del self._failed[: len(fails)]
            done += len(fails)
            retried = any(o.retry_in is not None for o in fails)
        if self.pending:
            self._ready.set()
        if done:
            self._metrics.flush_batch.observe(done)
            self._metrics.flush_seconds.observe(time.perf_counter() - started)
            if self._on_flushed is not None:
                self._on_flushed(retried)
        return done

    def _next_completions(self) -> list[Succeeded]:
        """The next completions to write: up to max_batch, and results of at most
        RESULT_CHARS_PER_STATEMENT together (at least one), since they go as one jsonb array,
        which PostgreSQL caps at 256 MiB (a dense numeric array is about 6 times its text)."""
        chars = 0
        for n, outcome in enumerate(self._succeeded[: self._max]):
            chars += len(outcome.result_json)
            if chars > RESULT_CHARS_PER_STATEMENT and n > 0:
                return self._succeeded[:n]
        return self._succeeded[: self._max]

    async def _complete(self, batch: list[Succeeded]) -> None:
        try:
            written = await self._write_completions(batch)
        except _REFUSED:
            # One value PostgreSQL refuses must not hold back (or crash) the rest of the batch:
            # write one by one, and fail the attempts whose result cannot be stored.
            written = 0
            for outcome in batch:
                try:
                    written += await self._write_completions([outcome])
                except _REFUSED as exc:
                    log.error("run %d: its result cannot be stored: %s", outcome.run_id, exc)
                    error = clean_text(f"unusable result: PostgreSQL refused it: {exc}")
                    self._failed.append(Failed(outcome.run_id, "failed", error, None))
                    written += 1
        self._report_late(len(batch) - written, "completions")

    async def _write_completions(self, batch: list[Succeeded]) -> int:
        rows = await self._pool.fetch(
            query("complete_batch"),
            id_array([o.run_id for o in batch]),
            json_array([o.result_json for o in batch]),
            column([o.progress[0] for o in batch]),
            column([o.progress[1] for o in batch]),
            column([o.progress[2] for o in batch]),
        )
        return len(rows)

    async def _fail(self, batch: list[Failed]) -> None:
        try:
            written = await self._write_failures(batch)
        except asyncpg.DataError:
            written = 0
            for outcome in batch:
                try:
                    written += await self._write_failures([outcome])
                except asyncpg.DataError as exc:
                    log.error("run %d: its error text cannot be stored: %s", outcome.run_id, exc)
                    error = clean_text(f"the error text could not be stored: {exc}")
                    written += await self._write_failures([replace(outcome, error=error)])
        self._report_late(len(batch) - written, "failures")

    async def _write_failures(self, batch: list[Failed]) -> int:
        rows = await self._pool.fetch(
            query("fail_batch"),
            id_array([o.run_id for o in batch]),
            [o.run_status for o in batch],
            [o.error for o in batch],
            [o.retry_in for o in batch],
        )
        return len(rows)

    def _report_late(self, late: int, what: str) -> None:
        if late > 0 and self._retrying:
            log.info(
                "%d %s matched nothing on a retry: written before the reply was lost, or their "
                "lease was lost meanwhile",
                late,
                what,
            )
        elif late > 0:
            self._metrics.late.inc(late)
            log.warning(
                "%d %s arrived after their lease was lost; the database kept its state", late, what
            )

    async def drain(self, timeout: float) -> bool:
        """Flush until nothing is buffered or `timeout` passes; True if everything was written."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            try:
                await self.run_once()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await recover(exc, self._pool)
                await asyncio.sleep(0.1)
        return not self.pending
