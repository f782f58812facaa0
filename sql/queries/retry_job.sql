-- Put a failed or cancelled job back to pending, now, with at least one attempt left.
UPDATE jobs SET
    status = 'pending',
    scheduled_at = now(),
    cancel_requested = false,
    completed_at = NULL,
    result = NULL,
    error = NULL,
    max_attempts = greatest(max_attempts, attempt_count + 1),
    updated_at = now()
WHERE id = $1 AND ($2::text IS NULL OR tenant = $2::text)
  AND status IN ('failed', 'cancelled')
RETURNING *
