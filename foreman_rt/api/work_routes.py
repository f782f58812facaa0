"""Routes for HTTP workers: claim, heartbeat, complete, fail — job-scoped (the reference
README's) and run-scoped (the reference's current code). Every lease-scoped call is a
compare-and-set on the run: a worker that no longer holds the lease gets 409 and changes
nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from foreman_rt.api.deps import Principal, caller, path_id, reply, service
from foreman_rt.api.models import ClaimBody, CompleteBody, FailBody, HeartbeatBody
from foreman_rt.errors import Conflict, NotFound
from foreman_rt.jobs import Job, Run, encode_params, validate_name
from foreman_rt.sql import query

router = APIRouter()
Worker = Annotated[Principal, Depends(caller("work"))]


def _lease(request: Request, seconds: float) -> float:
    default = service(request).settings.default_lease_seconds
    return default if seconds <= 0 else min(seconds, 86_400.0)


async def _claim(request: Request, body: ClaimBody, who: Principal) -> Response:
    kinds = [validate_name("kind", k) for k in body.kinds]
    queues = None if not body.queues else [validate_name("queue", q) for q in body.queues]
    if not kinds:
        return Response(status_code=204)
    row = await service(request).work_pool.fetchrow(
        query("http_claim"),
        queues,
        kinds,
        body.worker_id,
        _lease(request, body.lease_seconds),
        who.tenant,
    )
    if row is None:
        return Response(status_code=204)
    return reply(
        {
            "job": Job.model_validate(row["job"]).to_json(),
            "run": Run.model_validate(row["run"]).to_json(),
        }
    )


@router.post("/claim", summary="Claim one job (job-scoped API)")
async def claim_legacy(request: Request, body: ClaimBody, who: Worker) -> Response:
    """Claim the next ready job of `kinds`; 204 when there is none."""
    return await _claim(request, body, who)


@router.post("/jobs/claim", summary="Claim one job")
async def claim(request: Request, body: ClaimBody, who: Worker) -> Response:
    """Claim the next ready job of `kinds`; 204 when there is none."""
    return await _claim(request, body, who)


def _outcome(row: Any, what: str, ident: int) -> None:
    if row is None or row["found"] == 0:
        raise NotFound(f"{what} {ident} not found", code=f"{what}_not_found")


async def _heartbeat(
    request: Request, run_id: int | None, job_id: int | None, body: HeartbeatBody, who: Principal
) -> Response:
    row = await service(request).work_pool.fetchrow(
        query("http_heartbeat"),
        run_id,
        job_id,
        body.worker_id,
        _lease(request, body.lease_seconds),
        who.tenant,
        body.progress_current,
        body.progress_total,
        body.progress_message,
    )
    _outcome(row, "run" if run_id else "job", run_id or job_id or 0)
    assert row is not None
    if row["run"] is None:
        raise Conflict(
            "job not running under this worker (or its lease expired)", code="lease_lost"
        )
    data = Run.model_validate(row["run"]).to_json()
    data["cancel_requested"] = bool(row["cancel_requested"])
    return reply(data)


async def _complete(
    request: Request, run_id: int | None, job_id: int | None, body: CompleteBody, who: Principal
) -> Response:
    result = "null" if body.result is None else encode_params(body.result)
    row = await service(request).work_pool.fetchrow(
        query("http_complete"), run_id, job_id, body.worker_id, result, who.tenant
    )
    _outcome(row, "run" if run_id else "job", run_id or job_id or 0)
    assert row is not None
    if row["job"] is None:
        raise Conflict("job not running under this worker", code="lease_lost")
    return reply(Job.model_validate(row["job"]).to_json())


async def _fail(
    request: Request, run_id: int | None, job_id: int | None, body: FailBody, who: Principal
) -> Response:
    svc = service(request)
    result = None if body.result is None else encode_params(body.result)
    row = await svc.work_pool.fetchrow(
        query("http_fail"),
        run_id,
        job_id,
        body.worker_id,
        body.error.replace("\x00", ""),
        body.retryable,
        body.backoff_seconds,
        result,
        svc.settings.retry.base_seconds,
        svc.settings.retry.max_seconds,
        who.tenant,
    )
    _outcome(row, "run" if run_id else "job", run_id or job_id or 0)
    assert row is not None
    if row["job"] is None:
        raise Conflict("job not running under this worker", code="lease_lost")
    return reply(Job.model_validate(row["job"]).to_json())


@router.post("/jobs/{job_id}/heartbeat", summary="Renew the lease of a job's running attempt")
async def job_heartbeat(
    request: Request, job_id: str, body: HeartbeatBody, who: Worker
) -> Response:
    """Renew the lease and record progress; the reply says whether a cancel was requested."""
    return await _heartbeat(request, None, path_id(job_id, "job"), body, who)


@router.post("/runs/{run_id}/heartbeat", summary="Renew the lease of a run")
async def run_heartbeat(
    request: Request, run_id: str, body: HeartbeatBody, who: Worker
) -> Response:
    """Renew the lease and record progress; the reply says whether a cancel was requested."""
    return await _heartbeat(request, path_id(run_id, "run"), None, body, who)


@router.post("/jobs/{job_id}/complete", summary="Complete a job's running attempt")
async def job_complete(request: Request, job_id: str, body: CompleteBody, who: Worker) -> Response:
    """Mark the attempt and the job succeeded with `result`."""
    return await _complete(request, None, path_id(job_id, "job"), body, who)


@router.post("/runs/{run_id}/complete", summary="Complete a run")
async def run_complete(request: Request, run_id: str, body: CompleteBody, who: Worker) -> Response:
    """Mark the run and its job succeeded with `result`."""
    return await _complete(request, path_id(run_id, "run"), None, body, who)


@router.post("/jobs/{job_id}/fail", summary="Fail a job's running attempt")
async def job_fail(request: Request, job_id: str, body: FailBody, who: Worker) -> Response:
    """End the attempt as failed; the job retries if `retryable` and attempts remain."""
    return await _fail(request, None, path_id(job_id, "job"), body, who)


@router.post("/runs/{run_id}/fail", summary="Fail a run")
async def run_fail(request: Request, run_id: str, body: FailBody, who: Worker) -> Response:
    """End the run as failed; the job retries if `retryable` and attempts remain."""
    return await _fail(request, path_id(run_id, "run"), None, body, who)


__all__ = ["router"]
