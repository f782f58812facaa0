-- Pending: cancelled at once. Running: cancel_requested (the worker hears it on <schema>_cancel).
-- Terminal jobs are not matched; the caller reads them back unchanged.
UPDATE jobs SET
    status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    completed_at = CASE WHEN status = 'pending' THEN now() ELSE completed_at END,
    cancel_requested = true,
    updated_at = now()
WHERE id = $1 AND ($2::text IS NULL OR tenant = $2::text)
  AND status IN ('pending', 'running')
RETURNING *
