-- Renew one lease for an HTTP worker. The run is named by id ($1) or, job-scoped, by its
-- job ($2); it must be running under worker $3 with an unexpired lease. $5 limits it to a
-- tenant. found = 0: no such job or run (404); run NULL: not running under this worker (409).
WITH owner AS (
    SELECT j.id FROM jobs AS j
    WHERE ($5::text IS NULL OR j.tenant = $5::text)
      AND (j.id = $2::bigint OR j.id = (SELECT r.job_id FROM job_runs AS r WHERE r.id = $1::bigint))
), renewed AS (
    UPDATE jobs AS j SET
        lease_expires_at = now() + make_interval(secs => $4::double precision),
        progress_current = coalesce($6::bigint, j.progress_current),
        progress_total = coalesce($7::bigint, j.progress_total),
        progress_message = coalesce($8::text, j.progress_message),
        run_updated_at = now()
    WHERE j.id IN (SELECT id FROM owner) AND j.status = 'running' AND j.worker_id = $3::text
      AND j.lease_expires_at > now() AND (j.run_id = $1::bigint OR $1::bigint IS NULL)
    RETURNING j.*
)
SELECT (SELECT count(*) FROM owner) AS found,
       (SELECT jsonb_build_object(
           'id', x.run_id, 'job_id', x.id, 'attempt', x.attempt_count,
           'worker_id', x.worker_id, 'status', 'running', 'lease_expires_at', x.lease_expires_at,
           'progress_current', x.progress_current, 'progress_total', x.progress_total,
           'progress_message', x.progress_message, 'result', NULL, 'error', NULL,
           'started_at', x.attempt_started_at, 'finished_at', NULL,
           'updated_at', x.run_updated_at) FROM renewed AS x) AS run,
       (SELECT x.cancel_requested FROM renewed AS x) AS cancel_requested
