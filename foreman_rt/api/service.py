"""What the HTTP routes share: the pool, the client, the notification hub, metrics, auth and
rate limits. Start it from the app's lifespan (or your own, when mounting the app)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from foreman_rt import db
from foreman_rt.api.auth import Authenticator
from foreman_rt.api.hub import Hub
from foreman_rt.api.metrics import ServiceMetrics
from foreman_rt.api.ratelimit import RateLimiter
from foreman_rt.client import Client
from foreman_rt.config import DEFAULT_SCHEMA
from foreman_rt.embedded import resolve_dsn
from foreman_rt.retry import RetryPolicy
from foreman_rt.worker.maintenance import Maintenance
from foreman_rt.worker.metrics import WorkerMetrics
from foreman_rt.worker.settings import WorkerSettings, default_worker_id


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the service behaves."""

    dsn: str | None = None
    schema: str = DEFAULT_SCHEMA
    default_lease_seconds: float = 60.0
    keepalive_seconds: float = 15.0
    rate_per_second: float = 100.0
    burst: int = 200
    insecure_no_auth: bool = False
    reap_interval: float = 1.0
    leader_ttl: float = 10.0
    retention_days: int = 0
    pool_size: int = 10
    max_body_bytes: int = 2 * 1024 * 1024
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Service:
    """The running service's shared state."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.limiter = RateLimiter(settings.rate_per_second, settings.burst)
        self._client: Client | None = None
        self._work_pool: db.Pool | None = None
        self._hub: Hub | None = None
        self._auth: Authenticator | None = None
        self._maintenance: Maintenance | None = None
        self._maintenance_task: asyncio.Task[None] | None = None

    @property
    def client(self) -> Client:
        """The client (only while started)."""
        assert self._client is not None, "service not started"
        return self._client

    @property
    def hub(self) -> Hub:
        """The notification hub (only while started)."""
        assert self._hub is not None, "service not started"
        return self._hub

    @property
    def auth(self) -> Authenticator:
        """The authenticator (only while started)."""
        assert self._auth is not None, "service not started"
        return self._auth

    async def start(self) -> None:
        """Connect, check the schema, start listening."""
        s = self.settings
        dsn, _ = resolve_dsn(s.dsn)
        self._client = await Client.connect(
            dsn, s.schema, min_size=2, max_size=s.pool_size, reset_session=False
        )
        # What HTTP workers and maintenance run, in sessions planned as a worker's.
        self._work_pool = await db.create_pool(
            dsn,
            s.schema,
            min_size=1,
            max_size=s.pool_size,
            application_name="foreman-rt service worker",
            reset_session=False,
            settings=db.WORKER_PLANNER,
        )
        self._auth = Authenticator(self._client.pool, insecure_no_auth=s.insecure_no_auth)
        self._hub = Hub(self._client.pool, dsn, s.schema, self.metrics)
        await self._hub.start()
        # HTTP-only deployments have no foreman-rt worker: the service takes part in the
        # leader election for the reaper and retention too.
        maintenance = Maintenance(
            self._work_pool,
            WorkerSettings(
                worker_id="api:" + default_worker_id(),
                reap_interval=s.reap_interval,
                leader_ttl=s.leader_ttl,
                retention_days=s.retention_days,
                retry=s.retry,
            ),
            WorkerMetrics(),
        )
        self._maintenance = maintenance
        self._maintenance_task = asyncio.create_task(maintenance.run(), name="api-maintenance")

    async def stop(self) -> None:
        """Stop listening and close the pool."""
        if self._maintenance_task is not None:
            self._maintenance_task.cancel()
            await asyncio.gather(self._maintenance_task, return_exceptions=True)
            if self._maintenance is not None:
                with contextlib.suppress(Exception):
                    await self._maintenance.resign()
        if self._hub is not None:
            await self._hub.stop()
        if self._work_pool is not None:
            await self._work_pool.close()
        if self._client is not None:
            await self._client.close()

    @property
    def pool(self) -> db.Pool:
        """The connection pool."""
        return self.client.pool

    @property
    def work_pool(self) -> db.Pool:
        """The pool for HTTP workers' calls and maintenance (worker planner settings)."""
        assert self._work_pool is not None, "service not started"
        return self._work_pool
