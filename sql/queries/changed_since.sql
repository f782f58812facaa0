-- A tenant's jobs changed after $2 (resuming a tenant-wide stream), oldest change first, at most
-- $5. One branch per state, each read through its own index (migration 0011): pending jobs by
-- (tenant, updated_at), running jobs through the lease index (as many as the workers' slots),
-- terminal jobs by (completed_at, tenant), where completed_at is their last change.
SELECT c.id FROM (
    (SELECT j.id, j.updated_at FROM jobs AS j
     WHERE j.status = 'pending' AND j.tenant = $1 AND j.updated_at > $2::timestamptz
       AND ($3::text IS NULL OR j.queue = $3::text) AND ($4::text IS NULL OR j.kind = $4::text)
     ORDER BY j.updated_at LIMIT $5)
    UNION ALL
    (SELECT j.id, j.updated_at FROM jobs AS j
     WHERE j.lease_expires_at IS NOT NULL AND j.tenant = $1 AND j.updated_at > $2::timestamptz
       AND ($3::text IS NULL OR j.queue = $3::text) AND ($4::text IS NULL OR j.kind = $4::text)
     ORDER BY j.updated_at LIMIT $5)
    UNION ALL
    (SELECT j.id, j.completed_at FROM jobs AS j
     WHERE j.status IN ('succeeded', 'failed', 'cancelled') AND j.completed_at > $2::timestamptz
       AND j.tenant = $1
       AND ($3::text IS NULL OR j.queue = $3::text) AND ($4::text IS NULL OR j.kind = $4::text)
     ORDER BY j.completed_at LIMIT $5)
) AS c
ORDER BY c.updated_at
LIMIT $5
