-- Runs newest first with filters (status, worker, job, kind, tenant) and keyset pagination.
SELECT r.* FROM job_runs AS r JOIN jobs AS j ON j.id = r.job_id
WHERE ($1::text IS NULL OR r.status = $1::text)
  AND ($2::text IS NULL OR r.worker_id = $2::text)
  AND ($3::bigint IS NULL OR r.job_id = $3::bigint)
  AND ($4::text IS NULL OR j.kind = $4::text)
  AND ($5::text IS NULL OR j.tenant = $5::text)
  AND ($6::bigint IS NULL OR r.id < $6::bigint)
ORDER BY r.id DESC
LIMIT $7
