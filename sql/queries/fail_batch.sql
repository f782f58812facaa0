-- End many runs that did not succeed. $2 is each run's new status (failed, cancelled or
-- abandoned); $4 the retry delay in seconds (NULL: do not retry). The job then becomes
-- cancelled when a cancel was requested or the run was cancelled (cancel wins over retry),
-- pending again when a retry is allowed and attempts remain, failed otherwise; the attempt's
-- run row is written. Compare-and-set on the run id and the status, as for completions.
-- $1: the run ids as array text ('{1,2}').
WITH input AS (
    SELECT * FROM unnest($1::text::bigint[], $2::text[], $3::text[], $4::double precision[])
        AS t(run_id, run_status, error, retry_in)
), targets AS MATERIALIZED (
    -- Each run's job, by one index probe per run. A join here let the planner, from statistics
    -- that predate the claim, hash every running job; a scalar subquery cannot be flattened.
    -- The update below then reaches its rows by primary key (as an array, so that a small
    -- table is not hashed whole), and compares run ids with IS NOT DISTINCT FROM, which cannot
    -- make the running-jobs indexes look usable for it. The status is compared the same way,
    -- to a column of targets: a filter on jobs.status alone would be estimated from those
    -- statistics (no running job) and turned the join into a nested loop over every pair.
    SELECT i.*, (SELECT j.id FROM jobs AS j WHERE j.run_id = i.run_id) AS job_id,
           'running'::text AS running
    FROM input AS i
    -- In job id order: the update locks rows in the order it meets them, which is this
    -- CTE's (the plans hash jobs' rows and probe with it), so a heartbeat and a completion or
    -- failure of the same runs at once (a worker renews buffered outcomes) cannot deadlock.
    -- tests/integration/test_lock_order.py checks the plans: never a scan of jobs in heap
    -- order on the side that drives the update.
    ORDER BY job_id
), ended AS (
    UPDATE jobs AS j SET
        (status, scheduled_at, completed_at, error, updated_at, run_id, lease_expires_at) = (
        SELECT d.next,
               CASE WHEN d.next = 'pending'
                    THEN now() + make_interval(secs => i.retry_in) ELSE j.scheduled_at END,
               CASE WHEN d.next = 'pending' THEN NULL ELSE now() END,
               i.error,
               now(),
               NULL::bigint,
               NULL::timestamptz
        FROM (SELECT CASE
                         WHEN j.cancel_requested OR i.run_status = 'cancelled' THEN 'cancelled'
                         WHEN i.retry_in IS NOT NULL AND j.attempt_count < j.max_attempts
                             THEN 'pending'
                         ELSE 'failed'
                     END AS next) AS d
    )
    FROM targets AS i
    WHERE j.id = ANY (ARRAY(SELECT job_id FROM targets))
      AND j.id = i.job_id AND j.run_id IS NOT DISTINCT FROM i.run_id
      AND j.status IS NOT DISTINCT FROM i.running
    RETURNING i.run_id, j.id, j.attempt_count, j.worker_id, j.attempt_started_at,
              j.progress_current, j.progress_total, j.progress_message, j.status,
              i.run_status, i.error AS run_error
), runs AS (
    INSERT INTO finished_runs (id, job_id, attempt, worker_id, status, progress_current,
                               progress_total, progress_message, error, started_at,
                               finished_at, updated_at)
    SELECT run_id, id, attempt_count, worker_id, run_status, progress_current, progress_total,
           progress_message, run_error, attempt_started_at, now(), now()
    FROM ended
)
SELECT run_id, status FROM ended
