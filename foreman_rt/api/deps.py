"""Route helpers: the caller (authenticated, rate-limited, scoped), id parsing, JSON replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from foreman_rt.api.auth import AuthError, Principal
from foreman_rt.api.service import Service
from foreman_rt.errors import ForemanError
from foreman_rt.jobs import parse_id


class RateLimited(ForemanError):
    """Too many requests for this key."""

    code = "rate_limit_exceeded"
    status = 429


def service(request: Request) -> Service:
    """The service this app belongs to."""
    svc: Service = request.app.state.foreman
    return svc


def caller(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the authenticated caller, holding `scope`, within its rate limit."""

    async def dependency(request: Request) -> Principal:
        svc = service(request)
        host = request.client.host if request.client else None
        principal = await svc.auth.authenticate(request.headers.get("authorization"), host)
        principal.require(scope)
        if principal.key_id is not None:
            wait = svc.limiter.check(principal.key_id, principal.rate, principal.burst)
            if wait:
                raise RateLimited(
                    f"rate limit exceeded for this API key; retry in {wait} s", retry_after=wait
                )
        return principal

    return dependency


def path_id(value: str, what: str) -> int:
    """A job or run id from the path; 400 with a code when it is not one."""
    return parse_id(value, what)


def reply(data: Any, status: int = 200) -> JSONResponse:
    """A JSON response."""
    return JSONResponse(data, status_code=status)


def error_reply(exc: ForemanError) -> JSONResponse:
    """The error envelope for a foreman-rt error (Retry-After on 429 and 503)."""
    headers = {}
    if exc.status == 429 and "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    elif exc.status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


__all__ = [
    "AuthError",
    "Principal",
    "RateLimited",
    "caller",
    "error_reply",
    "path_id",
    "reply",
    "service",
]
