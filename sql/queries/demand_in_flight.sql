-- Transactions in progress now (taken after this process's demand row committed): an insert
-- among them may have checked for demand before the row existed, and so not notified.
SELECT coalesce(array_agg(x::text::bigint), '{}')
FROM pg_snapshot_xip(pg_current_snapshot()) AS x
