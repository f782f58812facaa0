-- Expired leases: the job is cancelled if a cancel was requested, pending again (after backoff)
-- if attempts remain, failed otherwise; the attempt's run row is written as abandoned. $2 and
-- $3: the default backoff base and cap in seconds, used where the job has none of its own.
WITH expired AS (
    SELECT id, run_id FROM jobs
    WHERE lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), ended AS (
    UPDATE jobs AS j SET
        (status, scheduled_at, completed_at, error, updated_at, run_id, lease_expires_at) = (
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
               now(),
               NULL::bigint,
               NULL::timestamptz
        FROM (SELECT CASE
                         WHEN j.cancel_requested THEN 'cancelled'
                         WHEN j.attempt_count < j.max_attempts THEN 'pending'
                         ELSE 'failed'
                     END AS next) AS d
    )
    FROM expired AS e
    WHERE j.id = e.id AND j.run_id IS NOT DISTINCT FROM e.run_id
    RETURNING j.id, j.status, e.run_id, j.attempt_count, j.worker_id, j.attempt_started_at,
              j.progress_current, j.progress_total, j.progress_message
), runs AS (
    INSERT INTO finished_runs (id, job_id, attempt, worker_id, status, progress_current,
                               progress_total, progress_message, error, started_at,
                               finished_at, updated_at)
    SELECT run_id, id, attempt_count, worker_id, 'abandoned', progress_current, progress_total,
           progress_message, 'lease expired', attempt_started_at, now(), now()
    FROM ended
)
SELECT id, status FROM ended
