-- Gauges read at scrape time: jobs by status, runs by status, oldest pending age per queue,
-- most overdue lease, dead tuples of the hot tables, notification queue usage.
SELECT
    (SELECT coalesce(json_object_agg(status, n), '{}') FROM
        (SELECT status, count(*) AS n FROM jobs GROUP BY status) AS s) AS jobs,
    (SELECT coalesce(json_object_agg(status, n), '{}') FROM
        (SELECT status, count(*) AS n FROM job_runs GROUP BY status) AS s) AS runs,
    (SELECT coalesce(json_object_agg(queue, age), '{}') FROM
        (SELECT queue, extract(epoch FROM now() - min(scheduled_at)) AS age FROM jobs
         WHERE status = 'pending' AND scheduled_at <= now() GROUP BY queue) AS q) AS oldest,
    (SELECT coalesce(extract(epoch FROM now() - min(lease_expires_at)), 0) FROM jobs
     WHERE status = 'running' AND lease_expires_at < now()) AS overdue,
    (SELECT coalesce(json_object_agg(relname, n_dead_tup), '{}') FROM pg_stat_user_tables
     WHERE schemaname = current_schema() AND relname IN ('jobs', 'finished_runs')) AS dead,
    pg_notification_queue_usage() AS notify_usage
