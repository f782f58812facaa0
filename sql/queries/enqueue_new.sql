-- One job without an idempotency key: a plain INSERT, as no conflict is possible. Same
-- arguments and columns as enqueue.sql, which keyed jobs take (its plpgsql conflict loop made
-- single enqueues about 25 % slower with 16 concurrent producers on PostgreSQL 15).
-- $12: delay in seconds from the database clock (NULL: use $5, or now).
INSERT INTO {schema}.jobs (kind, params, queue, priority, scheduled_at, max_attempts,
                           idempotency_key, tenant, service,
                           backoff_base_seconds, backoff_max_seconds)
VALUES ($1::text, coalesce($2::text::jsonb, '{}'::jsonb), coalesce($3::text, 'default'),
        coalesce($4::integer, 0),
        coalesce(CASE WHEN $12::double precision IS NULL THEN $5::timestamptz
                      ELSE now() + make_interval(secs => $12::double precision) END, now()),
        coalesce($6::integer, 3), $7::text, coalesce($8::text, 'default'), $9::text,
        $10::double precision, $11::double precision)
RETURNING true AS created, id, kind, queue, tenant, service, params::text AS params,
          priority, status, attempt_count, max_attempts, scheduled_at, idempotency_key,
          cancel_requested, result::text AS result, error, enqueued_at, started_at,
          completed_at, updated_at
