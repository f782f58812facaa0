-- Finish many runs as succeeded: the job row ends and the attempt's run row is written. A run
-- counts only while its job still runs it (compare-and-set on the run id): a late
-- completion from a reaped attempt matches nothing. Progress reported after the last heartbeat
-- rides along (NULL keeps the stored value). Returns the run ids that were completed.
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::jsonb[], $3::bigint[], $4::bigint[], $5::text[])
        AS t(run_id, result, current, total, message)
), targets AS MATERIALIZED (
    -- Each run's job, by one index probe per run. A join here let the planner, from statistics
    -- that predate the claim, hash every running job; a scalar subquery cannot be flattened.
    -- The update below then reaches its rows by primary key (as an array, so that a small
    -- table is not hashed whole), and compares run ids with IS NOT DISTINCT FROM, which cannot
    -- make the running-jobs indexes look usable for it.
    SELECT i.*, (SELECT j.id FROM jobs AS j WHERE j.run_id = i.run_id) AS job_id
    FROM input AS i
), done AS (
    UPDATE jobs AS j SET
        status = 'succeeded', result = i.result, error = NULL,
        completed_at = now(), updated_at = now(),
        run_id = NULL, lease_expires_at = NULL,
        progress_current = coalesce(i.current, j.progress_current),
        progress_total = coalesce(i.total, j.progress_total),
        progress_message = coalesce(i.message, j.progress_message)
    FROM targets AS i
    WHERE j.id = ANY (ARRAY(SELECT job_id FROM targets))
      AND j.id = i.job_id AND j.run_id IS NOT DISTINCT FROM i.run_id
    RETURNING i.run_id, j.id, j.attempt_count, j.worker_id, j.attempt_started_at,
              j.progress_current, j.progress_total, j.progress_message, j.result
)
INSERT INTO finished_runs (id, job_id, attempt, worker_id, status, progress_current,
                           progress_total, progress_message, result, started_at, finished_at,
                           updated_at)
SELECT run_id, id, attempt_count, worker_id, 'succeeded', progress_current, progress_total,
       progress_message, result, attempt_started_at, now(), now()
FROM done
RETURNING id AS run_id
