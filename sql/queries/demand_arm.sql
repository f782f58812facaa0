-- Want insert notifications for $3 seconds more: holder $1, queues $2 (NULL: every queue, '{}':
-- none), with $4 the enqueue counts too, and with $5 state-change events on <schema>_events.
INSERT INTO wake_demand AS d (holder, queues, counts, expires_at, events)
VALUES ($1, $2, $4, now() + make_interval(secs => $3::double precision), $5)
ON CONFLICT (holder) DO UPDATE
SET queues = excluded.queues, counts = excluded.counts, expires_at = excluded.expires_at,
    events = excluded.events
