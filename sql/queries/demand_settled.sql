-- Which of the transactions $1 are still in progress.
SELECT coalesce(array_agg(x), '{}') FROM unnest($1::bigint[]) AS x
WHERE pg_xact_status(x::text::xid8) = 'in progress'
