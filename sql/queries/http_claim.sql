-- Claim one job for an HTTP worker: like claim.sql, limited to a tenant ($5, NULL: any), and
-- returning the whole job and its running attempt (shaped like a job_runs row) as JSON.
-- $1 queues (NULL: any), $2 kinds, $3 worker id, $4 lease seconds.
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'pending'
      AND ($1::text[] IS NULL OR queue = ANY ($1::text[]))
      AND kind = ANY ($2::text[])
      AND ($5::text IS NULL OR tenant = $5::text)
      AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs AS j SET
        status = 'running',
        attempt_count = j.attempt_count + 1,
        started_at = coalesce(j.started_at, now()),
        updated_at = now(),
        run_id = nextval('finished_runs_id_seq'),
        worker_id = $3::text,
        lease_expires_at = now() + make_interval(secs => $4::double precision),
        attempt_started_at = now(),
        progress_current = NULL, progress_total = NULL, progress_message = NULL,
        run_updated_at = now()
    WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING j.*
)
SELECT to_jsonb(c) AS job,
       jsonb_build_object(
           'id', c.run_id, 'job_id', c.id, 'attempt', c.attempt_count,
           'worker_id', c.worker_id, 'status', 'running', 'lease_expires_at', c.lease_expires_at,
           'progress_current', c.progress_current, 'progress_total', c.progress_total,
           'progress_message', c.progress_message, 'result', NULL, 'error', NULL,
           'started_at', c.attempt_started_at, 'finished_at', NULL,
           'updated_at', c.run_updated_at) AS run
FROM claimed AS c
