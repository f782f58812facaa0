-- Fill up to $3 free slots in one statement: lock ready rows (priority, then due time, then
-- age) with SKIP LOCKED and mark them running, each with a new run id and a lease from the
-- database clock. The attempt lives on the job row until it ends; its run row is written then.
-- $1: queues (NULL: every queue), $2: kinds this worker handles, $4 worker id, $5 lease seconds.
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
)
UPDATE jobs AS j SET
    status = 'running',
    attempt_count = j.attempt_count + 1,
    started_at = coalesce(j.started_at, now()),
    updated_at = now(),
    run_id = nextval('finished_runs_id_seq'),
    worker_id = $4::text,
    lease_expires_at = now() + make_interval(secs => $5::double precision),
    attempt_started_at = now(),
    progress_current = NULL, progress_total = NULL, progress_message = NULL,
    run_updated_at = now()
WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
-- The worker unpacks these columns by position (runtime.CLAIM_COLUMNS): keep their order.
RETURNING j.id, j.kind, j.queue, j.tenant, j.params, j.attempt_count, j.max_attempts,
          j.backoff_base_seconds, j.backoff_max_seconds, j.run_id,
          extract(epoch FROM now() - j.enqueued_at)::double precision AS wait_seconds
