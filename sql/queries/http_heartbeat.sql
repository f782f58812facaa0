-- Renew one lease for an HTTP worker. The run is named by id ($1) or, job-scoped, by its
-- job ($2); it must be running under worker $3 with an unexpired lease. $5 limits it to a
-- tenant. found = 0: no such job or run (404); run NULL: not running under this worker (409).
WITH owner AS (
    SELECT j.id FROM jobs AS j
    WHERE ($5::text IS NULL OR j.tenant = $5::text)
      AND (j.id = $2::bigint OR j.id = (SELECT r.job_id FROM job_runs AS r WHERE r.id = $1::bigint))
), renewed AS (
    UPDATE job_runs AS r SET
        lease_expires_at = now() + make_interval(secs => $4::double precision),
        progress_current = coalesce($6::bigint, r.progress_current),
        progress_total = coalesce($7::bigint, r.progress_total),
        progress_message = coalesce($8::text, r.progress_message),
        updated_at = now()
    WHERE r.status = 'running' AND r.worker_id = $3::text AND r.lease_expires_at > now()
      AND r.job_id IN (SELECT id FROM owner)
      AND (r.id = $1::bigint OR ($1::bigint IS NULL AND r.job_id = $2::bigint))
    RETURNING r.*
)
SELECT (SELECT count(*) FROM owner) AS found,
       (SELECT to_jsonb(x) FROM renewed AS x) AS run,
       (SELECT j.cancel_requested FROM renewed AS x JOIN jobs AS j ON j.id = x.job_id)
           AS cancel_requested
