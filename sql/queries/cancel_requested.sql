-- Which of these jobs have a cancel request (used when a cancel notification overflowed).
SELECT id FROM jobs WHERE id = ANY ($1::bigint[]) AND cancel_requested
