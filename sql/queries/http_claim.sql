-- Claim one job for an HTTP worker: like claim.sql, limited to a tenant ($5, NULL: any), and
-- returning the whole job and run as JSON. $1 queues (NULL: any), $2 kinds, $3 worker id,
-- $4 lease seconds.
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
        updated_at = now()
    FROM picked WHERE j.id = picked.id
    RETURNING j.*
), runs AS (
    INSERT INTO job_runs (job_id, attempt, worker_id, lease_expires_at)
    SELECT id, attempt_count, $3::text, now() + make_interval(secs => $4::double precision)
    FROM claimed
    RETURNING *
)
SELECT to_jsonb(c) AS job, to_jsonb(r) AS run FROM claimed AS c JOIN runs AS r ON r.job_id = c.id
