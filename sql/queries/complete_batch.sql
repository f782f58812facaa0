-- Finish many runs as succeeded: the job row ends its attempt and keeps it (worker, start,
-- progress, result); no run row is written for a success. A run counts only while its job
-- still runs it (compare-and-set on the run id and the status): a late completion from a
-- reaped attempt, or a second one of the same run, matches nothing. Progress reported after
-- the last heartbeat rides along (NULL keeps the stored value). Returns the completed run ids.
-- $1: the run ids as array text ('{1,2}'); $2: their results as one JSON array; $3-$5: progress
-- (NULL: none in this batch). These forms cost the sender far less than lists do: see
-- foreman_rt/arrays.py.
WITH input AS (
    SELECT * FROM ROWS FROM (
        unnest($1::text::bigint[]), jsonb_array_elements($2::jsonb),
        unnest($3::bigint[]), unnest($4::bigint[]), unnest($5::text[])
    ) AS t(run_id, result, current, total, message)
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
)
UPDATE jobs AS j SET
    status = 'succeeded', result = i.result, error = NULL,
    completed_at = now(), updated_at = now(), lease_expires_at = NULL, run_updated_at = now(),
    progress_current = coalesce(i.current, j.progress_current),
    progress_total = coalesce(i.total, j.progress_total),
    progress_message = coalesce(i.message, j.progress_message)
FROM targets AS i
WHERE j.id = ANY (ARRAY(SELECT job_id FROM targets))
  AND j.id = i.job_id AND j.run_id IS NOT DISTINCT FROM i.run_id
  AND j.status IS NOT DISTINCT FROM i.running
RETURNING i.run_id
