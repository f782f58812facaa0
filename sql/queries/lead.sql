-- Take or renew leadership of a role for $3 seconds; returns a row only to the leader.
INSERT INTO leaders AS l (role, holder, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3::double precision))
ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at < now()
RETURNING holder
