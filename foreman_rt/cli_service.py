"""`foreman-rt api` and `foreman-rt keys`: the HTTP service and its API keys."""

from __future__ import annotations

import logging
import sys

import click

from foreman_rt import aio, db, keys, output
from foreman_rt.cli import OUTPUT, Context, handled, main, with_connection
from foreman_rt.errors import ConfigurationError

log = logging.getLogger("foreman_rt.api")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=7011, show_default=True)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve any client without API keys (never on a shared network).",
)
@click.option(
    "--default-lease",
    type=click.FloatRange(min=0.5),
    default=60.0,
    show_default=True,
    envvar="FOREMAN_DEFAULT_LEASE_SEC",
    help="Lease seconds when a claim omits one.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.001),
    default=100.0,
    show_default=True,
    help="Requests per second per API key (token bucket).",
)
@click.option("--burst", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--keepalive",
    type=click.FloatRange(min=0.05),
    default=15.0,
    show_default=True,
    help="Seconds between SSE keepalive comments.",
)
@click.option(
    "--reap-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Reaper period when this process is the leader.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    envvar="FOREMAN_RETENTION_DAYS",
    help="Delete terminal jobs older than this.",
)
@click.pass_obj
@handled
def api(
    ctx: Context,
    host: str,
    port: int,
    insecure_no_auth: bool,
    default_lease: float,
    rate: float,
    burst: int,
    keepalive: float,
    reap_interval: float,
    retention_days: int,
) -> None:
    """Serve the HTTP API, SSE streams and /metrics."""
    import uvicorn

    # Imported here: every other command (a worker above all) would pay ~10 MB and ~0.3 s for
    # FastAPI otherwise.
    from foreman_rt.api import ServiceSettings, create_app
    from foreman_rt.api.auth import is_loopback

    dsn = ctx.resolve()
    if not is_loopback(host) and not insecure_no_auth and not _keys_exist(dsn, ctx.schema):
        raise ConfigurationError(
            f"refusing to serve {host} without API keys: create one with `foreman-rt keys create "
            "--tenant T`, bind to 127.0.0.1, or pass --insecure-no-auth",
            code="auth_required",
        )
    if insecure_no_auth:
        log.warning("--insecure-no-auth: every client is served as tenant 'default' without a key")
    settings = ServiceSettings(
        dsn=dsn,
        schema=ctx.schema,
        default_lease_seconds=default_lease,
        keepalive_seconds=keepalive,
        rate_per_second=rate,
        burst=burst,
        insecure_no_auth=insecure_no_auth,
        reap_interval=reap_interval,
        retention_days=retention_days,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


def _keys_exist(dsn: str, schema: str) -> bool:
    async def go() -> bool:
        conn = await db.connect(dsn, schema)
        try:
            await db.check_schema(conn, schema)
            return await keys.live_count(conn) > 0
        finally:
            await conn.close()

    return aio.run(go())


@main.group("keys")
def keys_group() -> None:
    """API keys for the HTTP service."""


@keys_group.command("create")
@click.option("--tenant", required=True, help="The tenant every request with this key acts as.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(keys.SCOPES),
    help="Repeatable; default: every scope.",
)
@click.option("--name", help="A label for people.")
@click.option(
    "--rate", type=click.FloatRange(min=0.001), help="Requests per second (default: the service's)."
)
@click.option("--burst", type=click.IntRange(min=1))
@click.option("--output", "fmt", type=OUTPUT, default="table", show_default=True)
@click.pass_obj
@handled
def keys_create(
    ctx: Context,
    tenant: str,
    scopes: tuple[str, ...],
    name: str | None,
    rate: float | None,
    burst: int | None,
    fmt: str,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    secret, info = with_connection(
        ctx,
        lambda c: keys.create(
            c, tenant, scopes=scopes or keys.SCOPES, name=name, rate_per_second=rate, burst=burst
        ),
    )
    if fmt == "json":
        click.echo(output.to_json({"key": secret, **_key_json(info)}))
    else:
        click.echo(secret)
        click.echo(
            f"(key {info.id} for tenant {info.tenant!r}; shown once, store it now)", err=True
        )


@keys_group.command("list")
@click.option("--output", "fmt", type=OUTPUT, default="table", show_default=True)
@click.pass_obj
@handled
def keys_list(ctx: Context, fmt: str) -> None:
    """List keys (never their secrets)."""
    infos = [_key_json(k) for k in with_connection(ctx, keys.list_keys)]
    if fmt == "json":
        click.echo(output.to_json(infos))
    else:
        click.echo(output.table(infos, ("id", "tenant", "name", "prefix", "scopes", "revoked_at")))


@keys_group.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
@handled
def keys_revoke(ctx: Context, key_id: int) -> None:
    """Revoke a key (the service notices within 5 s)."""
    info = with_connection(ctx, lambda c: keys.revoke(c, key_id))
    click.echo(f"revoked key {info.id} (tenant {info.tenant!r})")


def _key_json(info: keys.KeyInfo) -> dict[str, object]:
    return {
        "id": str(info.id),
        "tenant": info.tenant,
        "name": info.name,
        "prefix": info.prefix,
        "scopes": list(info.scopes),
        "rate_per_second": info.rate_per_second,
        "burst": info.burst,
        "created_at": info.created_at.isoformat(),
        "revoked_at": None if info.revoked_at is None else info.revoked_at.isoformat(),
    }


__all__ = ["api", "keys_group", "sys"]
