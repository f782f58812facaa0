-- Want insert notifications for $3 seconds more: holder $1, queues $2 (NULL: every queue, '{}':
-- none), with $4 the enqueue counts too, and with $5 state-change events on <schema>_events.
-- Raises wake_hint to cover the new expiry (migration 0012), under the lock every writer of the
-- hint takes, so that two holders arming at once cannot leave the smaller bound.
WITH serialized AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended('foreman-rt wake hint ' || current_schema(), 0))
), armed AS (
    INSERT INTO wake_demand AS d (holder, queues, counts, expires_at, events)
    SELECT $1::text, $2::text[], $4::boolean, now() + make_interval(secs => $3::double precision),
           $5::boolean
    FROM serialized
    ON CONFLICT (holder) DO UPDATE
    SET queues = excluded.queues, counts = excluded.counts, expires_at = excluded.expires_at,
        events = excluded.events
    RETURNING d.expires_at
)
SELECT setval('wake_hint', greatest(pg_sequence_last_value('wake_hint'),
                                    ceil(extract(epoch FROM expires_at))::bigint))
FROM armed
