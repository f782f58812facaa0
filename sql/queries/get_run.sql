-- One run by id, limited to a tenant ($2, NULL: any).
SELECT r.* FROM job_runs AS r JOIN jobs AS j ON j.id = r.job_id
WHERE r.id = $1 AND ($2::text IS NULL OR j.tenant = $2::text)
