"""Routes for producers and readers: enqueue, list, show, runs, cancel, and the SSE streams.
Everything is scoped to the caller's tenant; another tenant's job is simply not found."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from foreman_rt import __version__
from foreman_rt.api import sse
from foreman_rt.api.deps import Principal, caller, path_id, reply, service
from foreman_rt.api.models import EnqueueBody
from foreman_rt.errors import NotFound
from foreman_rt.jobs import JobStatus, Run, RunStatus, parse_id, validate_int
from foreman_rt.sql import query

router = APIRouter()
Reader = Annotated[Principal, Depends(caller("read"))]
Producer = Annotated[Principal, Depends(caller("enqueue"))]
Canceller = Annotated[Principal, Depends(caller("cancel"))]
LIMIT_MAX = 200


@router.get("/ping", summary="Liveness")
async def ping() -> dict[str, str]:
    """Says the service is up."""
    return {"message": f"foreman-rt v{__version__} is online!"}


@router.post("/jobs", status_code=201, summary="Enqueue a job")
async def enqueue(request: Request, body: EnqueueBody, who: Producer) -> Response:
    """201 with the new job; 409 with the existing job when the idempotency key was used."""
    res = await service(request).client.enqueue(
        body.kind,
        body.params,
        queue=body.queue,
        priority=body.priority,
        scheduled_at=body.scheduled_at,
        max_attempts=body.max_attempts,
        idempotency_key=body.idempotency_key,
        tenant=who.tenant,
        service=body.service,
    )
    if not res.created:
        return reply(
            {
                "error": "job already exists for idempotency key",
                "code": "duplicate_idempotency_key",
                "job": res.job.to_json(),
            },
            409,
        )
    return reply(res.job.to_json(), 201)


def _limit(limit: int) -> int:
    return validate_int("limit", limit, 1, LIMIT_MAX)


@router.get("/jobs", summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    who: Reader,
    status: JobStatus | None = None,
    kind: str | None = None,
    queue: str | None = None,
    service_: Annotated[str | None, Query(alias="service")] = None,
    limit: int = 50,
    cursor: str | None = None,
    include: str | None = None,
) -> Response:
    """Filter by status, kind, queue, service; `cursor` is the last id of the previous page."""
    page = await service(request).client.list(
        status=status,
        kind=kind,
        queue=queue,
        service=service_,
        tenant=who.tenant,
        limit=_limit(limit),
        cursor=cursor,
    )
    data = [j.to_json() for j in page.jobs]
    if include == "current_run":
        await _attach_current_runs(request, data)
    return reply(data)


async def _attach_current_runs(request: Request, jobs: list[dict[str, Any]]) -> None:
    rows = await service(request).pool.fetch(
        "SELECT * FROM job_runs WHERE job_id = ANY($1::bigint[]) AND status = 'running'",
        [int(j["id"]) for j in jobs],
    )
    runs = {r["job_id"]: Run.from_row(r).to_json() for r in rows}
    for job in jobs:
        job["current_run"] = runs.get(int(job["id"]))


@router.get("/jobs/{job_id}", summary="One job")
async def get_job(
    request: Request, job_id: str, who: Reader, include: str | None = None
) -> Response:
    """The job; `include=current_run` adds its running attempt (or null)."""
    job = await service(request).client.get(path_id(job_id, "job"), tenant=who.tenant)
    data = job.to_json()
    if include == "current_run":
        await _attach_current_runs(request, [data])
    return reply(data)


@router.get("/jobs/{job_id}/runs", summary="Every attempt of a job")
async def job_runs(request: Request, job_id: str, who: Reader) -> Response:
    """Runs oldest first; 404 for an unknown job."""
    runs = await service(request).client.runs(path_id(job_id, "job"), tenant=who.tenant)
    return reply([r.to_json() for r in runs])


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job")
async def cancel(request: Request, job_id: str, who: Canceller) -> Response:
    """Pending: cancelled at once. Running: cancel_requested, the worker hears it within
    milliseconds. Terminal: returned unchanged."""
    job = await service(request).client.cancel(path_id(job_id, "job"), tenant=who.tenant)
    return reply(job.to_json())


@router.get("/runs", summary="List runs, newest first")
async def list_runs(
    request: Request,
    who: Reader,
    status: RunStatus | None = None,
    worker_id: str | None = None,
    job_id: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Response:
    """Filter by status, worker, job, kind; `cursor` is the last run id of the previous page."""
    rows = await service(request).pool.fetch(
        query("list_runs"),
        None if status is None else status.value,
        worker_id,
        None if job_id is None else parse_id(job_id, "job"),
        kind,
        who.tenant,
        None if cursor is None else parse_id(cursor, "cursor"),
        _limit(limit),
    )
    return reply([Run.from_row(r).to_json() for r in rows])


@router.get("/runs/{run_id}", summary="One run")
async def get_run(request: Request, run_id: str, who: Reader) -> Response:
    """The run; 404 for an unknown run."""
    ident = path_id(run_id, "run")
    row = await service(request).pool.fetchrow(query("get_run"), ident, who.tenant)
    if row is None:
        raise NotFound(f"run {ident} not found", code="run_not_found")
    return reply(Run.from_row(row).to_json())


SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


@router.get(
    "/events/{job_id}", summary="Stream one job's state (SSE)", response_class=StreamingResponse
)
async def job_events(
    request: Request,
    job_id: str,
    who: Reader,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The current state at once, one event per change, closing after the terminal state."""
    svc = service(request)
    ident = path_id(job_id, "job")
    await svc.client.get(ident, tenant=who.tenant)  # 404 before the stream starts
    stream = sse.job_stream(
        svc.hub,
        ident,
        who.tenant,
        sse.parse_last_event_id(last_event_id),
        svc.settings.keepalive_seconds,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/events", summary="Stream a tenant's job changes (SSE)", response_class=StreamingResponse
)
async def tenant_events(
    request: Request,
    who: Reader,
    queue: str | None = None,
    kind: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Every change to the caller's jobs, optionally one queue or kind; resumable."""
    svc = service(request)
    stream = sse.tenant_stream(
        svc.hub,
        who.tenant,
        queue,
        kind,
        sse.parse_last_event_id(last_event_id),
        svc.settings.keepalive_seconds,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


__all__ = ["router"]
