-- Finish many runs as succeeded. A run counts only while it is still running (compare-and-set
-- on run id and status): a late completion from a reaped attempt matches nothing.
-- Returns the job ids that were completed.
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::jsonb[]) AS t(run_id, result) ORDER BY run_id
), runs AS (
    UPDATE job_runs AS r SET
        status = 'succeeded', result = i.result, finished_at = now(),
        lease_expires_at = NULL, updated_at = now()
    FROM input AS i
    WHERE r.id = i.run_id AND r.status = 'running'
    RETURNING r.job_id, r.id AS run_id, i.result
)
UPDATE jobs AS j SET
    status = 'succeeded', result = runs.result, error = NULL,
    completed_at = now(), updated_at = now()
FROM runs
WHERE j.id = runs.job_id AND j.status = 'running'
RETURNING runs.run_id
