-- Fill up to $3 free slots in one statement: lock ready rows (priority, then due time, then
-- age) with SKIP LOCKED, mark them running, and write each attempt's run row with a lease from
-- the database clock. $1: queues (NULL: every queue), $2: kinds this worker handles.
-- The picked ids go in as an array so the update always reaches its rows by primary key; a join
-- to the CTE let the planner hash-join a sequential scan of jobs while the table was small.
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'pending'
      AND ($1::text[] IS NULL OR queue = ANY ($1::text[]))
      AND kind = ANY ($2::text[])
      AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs AS j SET
        status = 'running',
        attempt_count = j.attempt_count + 1,
        started_at = coalesce(j.started_at, now()),
        updated_at = now()
    WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.kind, j.queue, j.tenant, j.params, j.attempt_count, j.max_attempts,
              j.enqueued_at, j.backoff_base_seconds, j.backoff_max_seconds
), runs AS (
    INSERT INTO job_runs (job_id, attempt, worker_id, lease_expires_at)
    SELECT id, attempt_count, $4::text, now() + make_interval(secs => $5::double precision)
    FROM claimed
    RETURNING id, job_id
)
SELECT c.*, r.id AS run_id,
       extract(epoch FROM now() - c.enqueued_at)::double precision AS wait_seconds
FROM claimed AS c JOIN runs AS r ON r.job_id = c.id
