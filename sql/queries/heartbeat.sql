-- Renew many leases in one statement, carrying progress (NULL keeps the stored value). A lease
-- that already expired is not revived. Returns each renewed run with its job's cancel flag;
-- runs missing from the result have lost their lease.
-- $1: the run ids as array text ('{1,2}'); $3-$5: progress (NULL: none in this batch).
WITH input AS (
    SELECT * FROM unnest($1::text::bigint[], $3::bigint[], $4::bigint[], $5::text[])
        AS t(run_id, current, total, message)
), targets AS MATERIALIZED (
    -- Each run's job, by one index probe per run. A join here let the planner, from statistics
    -- that predate the claim, hash every running job; a scalar subquery cannot be flattened.
    -- The update below then reaches its rows by primary key (as an array, so that a small
    -- table is not hashed whole), and compares run ids with IS NOT DISTINCT FROM, which cannot
    -- make the running-jobs indexes look usable for it. The lease is compared to a column of
    -- targets for the same reason as the status in complete_batch.sql: as a filter on jobs
    -- alone it was estimated from those statistics, and the join became a nested loop.
    SELECT i.*, (SELECT j.id FROM jobs AS j WHERE j.run_id = i.run_id) AS job_id,
           now() AS checked_at
    FROM input AS i
    -- In job id order: the update locks rows in the order it meets them, which is this
    -- CTE's (the plans hash jobs' rows and probe with it), so a heartbeat and a completion or
    -- failure of the same runs at once (a worker renews buffered outcomes) cannot deadlock.
    -- tests/integration/test_lock_order.py checks the plans: never a scan of jobs in heap
    -- order on the side that drives the update.
    ORDER BY job_id
)
UPDATE jobs AS j SET
    lease_expires_at = now() + make_interval(secs => $2::double precision),
    progress_current = coalesce(i.current, j.progress_current),
    progress_total = coalesce(i.total, j.progress_total),
    progress_message = coalesce(i.message, j.progress_message),
    run_updated_at = now()
FROM targets AS i
WHERE j.id = ANY (ARRAY(SELECT job_id FROM targets))
  AND j.id = i.job_id AND j.run_id IS NOT DISTINCT FROM i.run_id
  AND (j.lease_expires_at > i.checked_at) IS TRUE  -- running, and the lease not expired
RETURNING j.run_id, j.cancel_requested
