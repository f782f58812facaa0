-- Insert notifications say when delayed jobs fall due: each group becomes
-- [queue, kind, count, seconds until the earliest future scheduled_at (null: all due now)],
-- so idle workers set their timers without querying after every claim.
CREATE OR REPLACE FUNCTION notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload text;
BEGIN
    SELECT json_agg(json_build_array(queue, kind, n, due))::text INTO payload
    FROM (SELECT queue, kind, count(*) AS n,
                 round(extract(epoch FROM min(scheduled_at) FILTER (WHERE scheduled_at > now())
                                          - now())::numeric, 3) AS due
          FROM new_rows
          WHERE status = 'pending' GROUP BY queue, kind) AS g;
    IF payload IS NULL THEN
        RETURN NULL;
    END IF;
    IF octet_length(payload) > 7800 THEN
        payload := '"*"';
    END IF;
    PERFORM pg_notify(current_schema() || '_wake', payload);
    RETURN NULL;
END $$;
