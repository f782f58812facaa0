"""This process's row in `wake_demand`: present while it wants insert notifications (a worker
with free slots, a service with open tenant streams) or state-change events (a running service,
a client waiting for a job), renewed while it stays, deleted when it goes. Inserts and state
changes notify only while such a row is live, so busy systems skip the NOTIFY and its
cluster-wide commit lock.

Arming has a race: an insert whose trigger looked for demand just before the row committed does
not notify, and may commit after the holder's next read. `arm()` returns the transactions in
flight once the row is visible; `settled()` waits for them, after which a read sees every such
insert (or state change)."""

from __future__ import annotations

import asyncio

from foreman_rt.db import Pool
from foreman_rt.sql import query

SETTLE_FIRST_WAIT = 0.002


class Demand:
    """Arms, renews and disarms one holder's wish for insert notifications."""

    def __init__(
        self,
        pool: Pool,
        holder: str,
        queues: tuple[str, ...] | None,
        ttl: float,
        *,
        counts: bool = False,
        events: bool = False,
    ) -> None:
        self._pool = pool
        self.holder = holder
        self._queues = None if queues is None else list(queues)
        self.ttl = ttl
        self.counts = counts  # inserts also append their enqueue counts while this row lives
        self.events = events  # state changes and progress notify <schema>_events while it lives
        self.armed = False
        self._forgotten = 0  # forget() calls so far: a write in flight across one does not arm

    async def arm(self) -> list[int]:
        """Write (or renew) the row; returns the transactions in flight once it is visible."""
        await self.write()
        xids: list[int] = await self._pool.fetchval(query("demand_in_flight"))
        return xids

    async def renew(self) -> None:
        """Extend the row while armed (writes it again if a crash emptied the table)."""
        if self.armed:
            await self.write()

    async def write(self) -> None:
        """Write (or extend) the row now, armed or not; no in-flight read (counting rows).
        Stays unarmed if forget() was called meanwhile: the row may be gone again."""
        forgotten = self._forgotten
        await self._pool.execute(
            query("demand_arm"), self.holder, self._queues, self.ttl, self.counts, self.events
        )
        self.armed = forgotten == self._forgotten

    async def disarm(self) -> None:
        """Delete the row: inserts stop notifying this holder."""
        if self.armed:
            self.armed = False
            await self._pool.execute(query("demand_disarm"), self.holder)

    def forget(self) -> None:
        """The row may be gone (the database restarted): arm again before relying on it."""
        self.armed = False
        self._forgotten += 1

    async def settled(self, xids: list[int], limit: float) -> None:
        """Return once none of `xids` is in progress, or after `limit` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        wait = SETTLE_FIRST_WAIT
        while xids:
            await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))
            if loop.time() >= deadline:
                return
            xids = await self._pool.fetchval(query("demand_settled"), xids)
            wait = min(wait * 2, 0.1)
