"""The ASGI app: routes under /foreman, the JSON error envelope, a body-size limit, /metrics,
and OpenAPI at /foreman/openapi.json. `create_app()` is mountable in your own service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foreman_rt import __version__
from foreman_rt.api import job_routes, work_routes
from foreman_rt.api.deps import error_reply, service
from foreman_rt.api.service import Service, ServiceSettings
from foreman_rt.dberrors import DRIVER_ERRORS, recover, translate
from foreman_rt.errors import ForemanError

log = logging.getLogger("foreman_rt.api")
PREFIX = "/foreman"
_HTTP_CODES = {404: "route_not_found", 405: "method_not_allowed", 413: "body_too_large"}


def create_app(settings: ServiceSettings | None = None, *, lifespan: bool = True) -> FastAPI:
    """The foreman-rt HTTP app. With `lifespan=False`, call `app.state.foreman.start()` and
    `.stop()` from your own lifespan (mounted sub-apps get no lifespan events)."""
    svc = Service(settings or ServiceSettings())

    @asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="foreman-rt",
        version=__version__,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        lifespan=run if lifespan else None,
        strict_content_type=False,  # the reference's curl examples send no Content-Type
    )
    app.state.foreman = svc
    app.include_router(job_routes.router, prefix=PREFIX)
    app.include_router(work_routes.router, prefix=PREFIX)
    app.add_api_route(f"{PREFIX}/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=svc.settings.max_body_bytes)
    app.add_middleware(JsonBodies)
    return app


async def metrics(request: Request) -> Response:
    """Prometheus text format; SQL gauges refreshed at most once a second."""
    svc = service(request)
    try:
        await svc.metrics.refresh_gauges(svc.pool)
    except Exception as exc:
        log.warning("could not refresh SQL gauges: %s", exc)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ForemanError)
    async def foreman_error(_r: Request, exc: ForemanError) -> JSONResponse:
        return error_reply(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe(e) for e in exc.errors()[:10]]
        body = {
            "error": "invalid request: " + "; ".join(problems),
            "code": "invalid_request",
            "problems": problems,
        }
        return JSONResponse(body, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_r: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse({"error": str(exc.detail), "code": code}, status_code=exc.status_code)

    # Database errors are handled by class, inside Starlette's exception middleware: a handler
    # for bare Exception runs in the outermost middleware, which re-raises after answering, so
    # every 503 would leave a traceback in the server log.
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        svc = service(request)
        await recover(exc, svc.pool, svc.work_pool)  # HTTP workers' calls use the second
        error = translate(exc)
        if error is None:
            return _internal(exc)
        return error_reply(error)

    for kind in DRIVER_ERRORS:
        app.add_exception_handler(kind, database_error)

    @app.exception_handler(Exception)
    async def unexpected(_r: Request, exc: Exception) -> JSONResponse:
        return _internal(exc)


def _internal(exc: Exception) -> JSONResponse:
    log.error("unexpected error", exc_info=exc)
    return JSONResponse(
        {"error": "internal error; see the service log", "code": "internal_error"},
        status_code=500,
    )


def _describe(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    return f"{where or 'body'}: {err.get('msg', 'invalid')}"


class JsonBodies:
    """Every body this API takes is JSON: treat bodies sent without a JSON content type (as
    `curl -d` sends them, and as the reference's README examples do) as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class BodyLimit:
    """Rejects request bodies over `max_bytes` with 413 before the route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(scope, receive, send, self.max_bytes)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = JSONResponse(
        {"error": f"request body over {limit} bytes", "code": "body_too_large"}, status_code=413
    )
    await response(scope, receive, send)
