-- Complete one run for an HTTP worker (named by run $1 or job $2; worker $3; result $4 as JSON
-- text; tenant $5). found = 0: 404; job NULL: the run is not running under this worker (409).
WITH owner AS (
    SELECT j.id FROM jobs AS j
    WHERE ($5::text IS NULL OR j.tenant = $5::text)
      AND (j.id = $2::bigint OR j.id = (SELECT r.job_id FROM job_runs AS r WHERE r.id = $1::bigint))
), finished AS (
    UPDATE job_runs AS r SET
        status = 'succeeded', result = $4::text::jsonb, finished_at = now(),
        lease_expires_at = NULL, updated_at = now()
    WHERE r.status = 'running' AND r.worker_id = $3::text
      AND r.job_id IN (SELECT id FROM owner)
      AND (r.id = $1::bigint OR ($1::bigint IS NULL AND r.job_id = $2::bigint))
    RETURNING r.job_id, r.result
), done AS (
    UPDATE jobs AS j SET
        status = 'succeeded', result = f.result, error = NULL,
        completed_at = now(), updated_at = now()
    FROM finished AS f
    WHERE j.id = f.job_id AND j.status = 'running'
    RETURNING j.*
)
SELECT (SELECT count(*) FROM owner) AS found, (SELECT to_jsonb(d) FROM done AS d) AS job
