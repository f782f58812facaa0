-- A tenant's jobs changed after $2 (resuming a tenant-wide stream), oldest change first.
SELECT j.id FROM jobs AS j
WHERE j.tenant = $1 AND j.updated_at > $2::timestamptz
  AND ($3::text IS NULL OR j.queue = $3::text) AND ($4::text IS NULL OR j.kind = $4::text)
ORDER BY j.updated_at
LIMIT $5
