-- Ids of jobs created after id $1 (new jobs for tenant streams; inserts carry no ids).
SELECT id FROM jobs WHERE id > $1 ORDER BY id LIMIT $2
