-- Fail one run for an HTTP worker (run $1 or job $2; worker $3; error $4; retryable $5;
-- backoff seconds $6, NULL: the default policy with base $8 and cap $9; partial result $7 kept
-- on the run only; tenant $10). Cancel wins over retry. found = 0: 404; job NULL: 409.
WITH owner AS (
    SELECT j.id FROM jobs AS j
    WHERE ($10::text IS NULL OR j.tenant = $10::text)
      AND (j.id = $2::bigint OR j.id = (SELECT r.job_id FROM job_runs AS r WHERE r.id = $1::bigint))
), cur AS (
    SELECT j.id, j.run_id FROM jobs AS j
    WHERE j.id IN (SELECT id FROM owner) AND j.status = 'running' AND j.worker_id = $3::text
      AND (j.run_id = $1::bigint OR $1::bigint IS NULL)
    FOR UPDATE
), done AS (
    UPDATE jobs AS j SET
        (status, scheduled_at, completed_at, error, updated_at, run_id, lease_expires_at) = (
        SELECT d.next,
               CASE WHEN d.next = 'pending'
                    THEN now() + make_interval(secs => coalesce($6::double precision, least(
                        coalesce(j.backoff_max_seconds, $9::double precision),
                        coalesce(j.backoff_base_seconds, $8::double precision)
                            * power(2, greatest(j.attempt_count - 1, 0)))
                        * (0.5 + random() * 0.5)))
                    ELSE j.scheduled_at END,
               CASE WHEN d.next = 'pending' THEN NULL ELSE now() END,
               $4::text,
               now(),
               NULL::bigint,
               NULL::timestamptz
        FROM (SELECT CASE
                         WHEN j.cancel_requested THEN 'cancelled'
                         WHEN $5::boolean AND j.attempt_count < j.max_attempts THEN 'pending'
                         ELSE 'failed'
                     END AS next) AS d
    )
    FROM cur AS c
    WHERE j.id = c.id AND j.run_id IS NOT DISTINCT FROM c.run_id
    RETURNING j.*, c.run_id AS ended_run
), runs AS (
    INSERT INTO finished_runs (id, job_id, attempt, worker_id, status, progress_current,
                               progress_total, progress_message, result, error, started_at,
                               finished_at, updated_at)
    SELECT ended_run, id, attempt_count, worker_id, 'failed', progress_current, progress_total,
           progress_message, $7::text::jsonb, $4::text, attempt_started_at, now(), now()
    FROM done
)
SELECT (SELECT count(*) FROM owner) AS found, (SELECT to_jsonb(d) FROM done AS d) AS job
