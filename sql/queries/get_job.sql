-- One job by id; $2 limits it to a tenant (NULL: any tenant).
SELECT * FROM jobs WHERE id = $1 AND ($2::text IS NULL OR tenant = $2::text)
