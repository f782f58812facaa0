-- End many runs that did not succeed. $2 is each run's new status (failed, cancelled or
-- abandoned); $4 the retry delay in seconds (NULL: do not retry). The job then becomes
-- cancelled when a cancel was requested or the run was cancelled (cancel wins over retry),
-- pending again when a retry is allowed and attempts remain, failed otherwise.
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::double precision[])
        AS t(run_id, run_status, error, retry_in)
    ORDER BY run_id
), runs AS (
    UPDATE job_runs AS r SET
        status = i.run_status, error = i.error, finished_at = now(),
        lease_expires_at = NULL, updated_at = now()
    FROM input AS i
    WHERE r.id = i.run_id AND r.status = 'running'
    RETURNING r.job_id, r.id AS run_id, i.run_status, i.error, i.retry_in
)
UPDATE jobs AS j SET (status, scheduled_at, completed_at, error, updated_at) = (
    SELECT d.next,
           CASE WHEN d.next = 'pending'
                THEN now() + make_interval(secs => runs.retry_in) ELSE j.scheduled_at END,
           CASE WHEN d.next = 'pending' THEN NULL ELSE now() END,
           runs.error,
           now()
    FROM (SELECT CASE
                     WHEN j.cancel_requested OR runs.run_status = 'cancelled' THEN 'cancelled'
                     WHEN runs.retry_in IS NOT NULL AND j.attempt_count < j.max_attempts
                         THEN 'pending'
                     ELSE 'failed'
                 END AS next) AS d
)
FROM runs
WHERE j.id = runs.job_id AND j.status = 'running'
RETURNING runs.run_id, j.status
