-- The insert trigger returns at once while no live wake_demand row exists (nobody waits and
-- nobody counts), before it aggregates the inserted rows. 16 single-job producers on
-- PostgreSQL 15, trigger on against off in interleaved 3 s slices: the cost fell from about
-- 17 % to about 8 %, the same as an empty statement trigger with a transition table.
CREATE OR REPLACE FUNCTION notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload text;
    inserted_queues text[];
    holders bigint;
    every_queue boolean;
    wanted boolean;
    counting boolean;
BEGIN
    SELECT count(*), bool_or(d.counts), bool_or(d.queues IS NULL)
    INTO holders, counting, every_queue
    FROM wake_demand AS d WHERE d.expires_at > now();
    IF holders = 0 THEN
        RETURN NULL;
    END IF;

    IF counting THEN
        INSERT INTO enqueue_counts (kind, queue, n)
        SELECT kind, queue, count(*) FROM new_rows GROUP BY kind, queue;
    END IF;
    SELECT array_agg(DISTINCT queue) INTO inserted_queues FROM new_rows WHERE status = 'pending';
    IF inserted_queues IS NULL THEN
        RETURN NULL;
    END IF;
    wanted := every_queue;
    IF NOT wanted THEN
        SELECT bool_or(d.queues && inserted_queues) INTO wanted
        FROM wake_demand AS d WHERE d.expires_at > now();
        IF NOT coalesce(wanted, false) THEN
            RETURN NULL;
        END IF;
    END IF;

    SELECT json_agg(json_build_array(queue, kind, n, due))::text INTO payload
    FROM (SELECT queue, kind, count(*) AS n,
                 round(extract(epoch FROM min(scheduled_at) FILTER (WHERE scheduled_at > now())
                                          - now())::numeric, 3) AS due
          FROM new_rows
          WHERE status = 'pending' GROUP BY queue, kind) AS g;
    IF octet_length(payload) > 7800 THEN
        payload := '"*"';
    END IF;
    PERFORM pg_notify(current_schema() || '_wake', payload);
    RETURN NULL;
END $$;
