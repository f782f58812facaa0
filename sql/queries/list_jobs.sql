-- Newest first, keyset-paginated: $6 is the last id of the previous page (NULL: first page).
SELECT * FROM jobs
WHERE ($1::text IS NULL OR status = $1::text)
  AND ($2::text IS NULL OR kind = $2::text)
  AND ($3::text IS NULL OR queue = $3::text)
  AND ($4::text IS NULL OR tenant = $4::text)
  AND ($5::text IS NULL OR service = $5::text)
  AND ($6::bigint IS NULL OR id < $6::bigint)
ORDER BY id DESC
LIMIT $7
