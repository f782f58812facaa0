-- Renew many leases in one statement, carrying progress (NULL keeps the stored value). A lease
-- that already expired is not revived. Returns each renewed run with its job's cancel flag;
-- runs missing from the result have lost their lease.
UPDATE job_runs AS r SET
    lease_expires_at = now() + make_interval(secs => $2::double precision),
    progress_current = coalesce(i.current, r.progress_current),
    progress_total = coalesce(i.total, r.progress_total),
    progress_message = coalesce(i.message, r.progress_message),
    updated_at = now()
FROM unnest($1::bigint[], $3::bigint[], $4::bigint[], $5::text[]) AS i(run_id, current, total, message)
WHERE r.id = i.run_id AND r.status = 'running' AND r.lease_expires_at > now()
RETURNING r.id AS run_id, (SELECT j.cancel_requested FROM jobs AS j WHERE j.id = r.job_id)
