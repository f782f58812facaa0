-- Complete one run for an HTTP worker (named by run $1 or job $2; worker $3; result $4 as JSON
-- text; tenant $5). found = 0: 404; job NULL: the run is not running under this worker (409).
WITH owner AS (
    SELECT j.id FROM jobs AS j
    WHERE ($5::text IS NULL OR j.tenant = $5::text)
      AND (j.id = $2::bigint OR j.id = (SELECT r.job_id FROM job_runs AS r WHERE r.id = $1::bigint))
), cur AS (
    SELECT j.id, j.run_id FROM jobs AS j
    WHERE j.id IN (SELECT id FROM owner) AND j.status = 'running' AND j.worker_id = $3::text
      AND (j.run_id = $1::bigint OR $1::bigint IS NULL)
    FOR UPDATE
), done AS (
    UPDATE jobs AS j SET
        status = 'succeeded', result = $4::text::jsonb, error = NULL,
        completed_at = now(), updated_at = now(), lease_expires_at = NULL,
        run_updated_at = now()
    FROM cur AS c
    WHERE j.id = c.id AND j.run_id IS NOT DISTINCT FROM c.run_id
    RETURNING j.*, c.run_id AS ended_run
)
SELECT (SELECT count(*) FROM owner) AS found, (SELECT to_jsonb(d) FROM done AS d) AS job
