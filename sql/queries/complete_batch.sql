-- Finish many runs as succeeded. A run counts only while it is still running (compare-and-set
-- on run id and status): a late completion from a reaped attempt matches nothing.
-- Progress reported after the last heartbeat rides along (NULL keeps the stored value).
-- Returns the run ids that were completed.
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::jsonb[], $3::bigint[], $4::bigint[], $5::text[])
        AS t(run_id, result, current, total, message)
    ORDER BY run_id
), runs AS (
    UPDATE job_runs AS r SET
        status = 'succeeded', result = i.result, finished_at = now(),
        lease_expires_at = NULL, updated_at = now(),
        progress_current = coalesce(i.current, r.progress_current),
        progress_total = coalesce(i.total, r.progress_total),
        progress_message = coalesce(i.message, r.progress_message)
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
