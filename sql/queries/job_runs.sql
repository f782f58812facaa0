-- Every attempt of one job, oldest first.
SELECT * FROM job_runs WHERE job_id = $1 ORDER BY attempt
