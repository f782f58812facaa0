-- Current state of many jobs with their latest run, for streams (tenant $2, NULL: any).
SELECT to_jsonb(j) AS job, to_jsonb(r) AS run
FROM jobs AS j
LEFT JOIN LATERAL (
    SELECT * FROM job_runs AS x WHERE x.job_id = j.id ORDER BY x.attempt DESC LIMIT 1
) AS r ON true
WHERE j.id = ANY ($1::bigint[]) AND ($2::text IS NULL OR j.tenant = $2::text)
