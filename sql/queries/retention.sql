-- Delete up to $2 terminal jobs finished more than $1 days ago (a trigger deletes their runs).
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND completed_at < now() - make_interval(days => $1::integer)
    ORDER BY completed_at
    LIMIT $2
)
