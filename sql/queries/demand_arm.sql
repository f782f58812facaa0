-- Want insert notifications for $3 seconds more: holder $1, queues $2 (NULL: every queue).
INSERT INTO wake_demand AS d (holder, queues, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3::double precision))
ON CONFLICT (holder) DO UPDATE SET queues = excluded.queues, expires_at = excluded.expires_at
