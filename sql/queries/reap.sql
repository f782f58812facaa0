-- Expired leases: the run becomes abandoned; the job is cancelled if a cancel was requested,
-- pending again (after backoff) if attempts remain, failed otherwise. $2 and $3: the default
-- backoff base and cap in seconds, used where the job has none of its own.
WITH expired AS (
    UPDATE job_runs SET
        status = 'abandoned', finished_at = now(), lease_expires_at = NULL,
        error = coalesce(error, 'lease expired'), updated_at = now()
    WHERE id IN (SELECT id FROM job_runs
                 WHERE status = 'running' AND lease_expires_at < now()
                 ORDER BY lease_expires_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
    RETURNING job_id
)
UPDATE jobs AS j SET (status, scheduled_at, completed_at, error, updated_at) = (
    SELECT d.next,
           CASE WHEN d.next = 'pending'
                THEN now() + make_interval(secs => least(
                    coalesce(j.backoff_max_seconds, $3::double precision),
                    coalesce(j.backoff_base_seconds, $2::double precision)
                        * power(2, greatest(j.attempt_count - 1, 0)))
                    * (0.5 + random() * 0.5))
                ELSE j.scheduled_at END,
           CASE WHEN d.next = 'pending' THEN NULL ELSE now() END,
           'lease expired',
           now()
    FROM (SELECT CASE
                     WHEN j.cancel_requested THEN 'cancelled'
                     WHEN j.attempt_count < j.max_attempts THEN 'pending'
                     ELSE 'failed'
                 END AS next) AS d
)
FROM expired
WHERE j.id = expired.job_id AND j.status = 'running'
RETURNING j.id, j.status
