-- Insert notifications only when someone waits for them. Every notifying commit holds the
-- cluster-wide notify lock through its WAL flush, so NOTIFY on every insert serialises
-- producers. Processes that want insert notifications (a worker with free slots, a service
-- with open tenant streams) hold a row in wake_demand, renewed while they want them; the insert
-- trigger notifies only while such a row is live for one of the inserted queues.
-- Unlogged: the rows are soft state. After a crash the table is empty and every holder writes
-- its row again when its listener reconnects.
CREATE UNLOGGED TABLE wake_demand (
    holder     text PRIMARY KEY,
    queues     text[],                      -- NULL: every queue; '{}': none (counts only)
    counts     boolean NOT NULL DEFAULT false,  -- the holder exports enqueue counts
    expires_at timestamptz NOT NULL
);

-- Enqueue counts no longer ride on the notifications (those are now skipped while nobody
-- waits): while a live wake_demand row has `counts` (a running `foreman-rt api`, which exports
-- them), each insert statement appends its counts here, and readers (the service at scrape
-- time, the maintenance leader every 10 s) fold them into enqueue_totals in one statement.
-- Unlogged, because WAL for a second row per insert measurably slowed single-job enqueues; a
-- crash loses only the counts not folded yet (a Prometheus counter survives such a dip).
CREATE UNLOGGED TABLE enqueue_counts (
    kind  text   NOT NULL,
    queue text   NOT NULL,
    n     bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);

CREATE TABLE enqueue_totals (
    kind  text   NOT NULL,
    queue text   NOT NULL,
    total bigint NOT NULL,
    PRIMARY KEY (kind, queue)
);

CREATE OR REPLACE FUNCTION notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload text;
    inserted_queues text[];
    wanted boolean;
    counting boolean;
BEGIN
    SELECT array_agg(DISTINCT queue) INTO inserted_queues FROM new_rows WHERE status = 'pending';
    SELECT bool_or(d.queues IS NULL OR d.queues && inserted_queues), bool_or(d.counts)
    INTO wanted, counting
    FROM wake_demand AS d WHERE d.expires_at > now();

    IF counting THEN
        INSERT INTO enqueue_counts (kind, queue, n)
        SELECT kind, queue, count(*) FROM new_rows GROUP BY kind, queue;
    END IF;
    IF inserted_queues IS NULL OR NOT coalesce(wanted, false) THEN
        RETURN NULL;
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
