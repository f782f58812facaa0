-- Seconds until the earliest future pending job this worker could claim (NULL: none).
SELECT extract(epoch FROM min(scheduled_at) - now())::double precision
FROM jobs
WHERE status = 'pending'
  AND ($1::text[] IS NULL OR queue = ANY ($1::text[]))
  AND kind = ANY ($2::text[])
  AND scheduled_at > now()
