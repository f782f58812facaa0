-- One job, idempotent on (tenant, kind, idempotency_key). May run on the caller's own
-- connection, so names are schema-qualified ({schema} is the validated schema identifier) and
-- JSON travels as text both ways, whatever codecs that connection has.
-- $12: delay in seconds from the database clock (NULL: use $5, or now).
SELECT e.created, j.id, j.kind, j.queue, j.tenant, j.service, j.params::text AS params,
       j.priority, j.status, j.attempt_count, j.max_attempts, j.scheduled_at,
       j.idempotency_key, j.cancel_requested, j.result::text AS result, j.error,
       j.enqueued_at, j.started_at, j.completed_at, j.updated_at
FROM {schema}.enqueue_job(
    $1::text, $2::text::jsonb, $3::text, $4::integer,
    CASE WHEN $12::double precision IS NULL THEN $5::timestamptz
         ELSE now() + make_interval(secs => $12::double precision) END,
    $6::integer, $7::text, $8::text, $9::text, $10::double precision, $11::double precision
) AS e, LATERAL (SELECT (e.job).*) AS j
