-- Fold the per-statement enqueue counts into the running totals (one statement, so concurrent
-- readers each fold disjoint rows), then return every total.
WITH gone AS (
    DELETE FROM enqueue_counts RETURNING kind, queue, n
), folded AS (
    INSERT INTO enqueue_totals AS t (kind, queue, total)
    SELECT kind, queue, sum(n) FROM gone GROUP BY kind, queue
    ON CONFLICT (kind, queue) DO UPDATE SET total = t.total + excluded.total
    RETURNING kind, queue, total
)
SELECT kind, queue, total FROM folded
UNION ALL
SELECT kind, queue, total FROM enqueue_totals AS t
WHERE NOT EXISTS (SELECT 1 FROM folded AS f WHERE f.kind = t.kind AND f.queue = t.queue)
