-- Inserts skip their notify trigger while nobody waits. Until now every insert statement called
-- notify_jobs_inserted(), which read wake_demand to find that no holder was live: about 13 us
-- of the inserting backend's CPU per single-row insert (the call, its transition table, the
-- read), a sixth of the insert. The trigger now fires only WHEN the sequence wake_hint, read
-- without a table scan or a snapshot, says a holder may be live: its value is an upper bound
-- (epoch seconds, rounded up) on the expiry of every row in wake_demand. Holders raise it when
-- they arm or renew and lower it when they go, each under one advisory lock so that a bound is
-- never overwritten by a smaller one; the trigger's own check decides as before while it is up.
-- An insert that read the old bound just before a holder armed is one of the transactions in
-- flight that the holder waits out (demand.py), as before. Sequence values are not
-- transactional: a holder's bound counts from the moment it is set.

CREATE SEQUENCE wake_hint;
SELECT setval('wake_hint', greatest(1, ceil(extract(epoch FROM max(expires_at)))::bigint))
FROM wake_demand;

-- Lower the bound to the rows left after deleting holder $1 (and rows expired a minute ago).
-- A function, so that the lock is taken before the statements that read wake_demand take their
-- snapshots: a row armed just before then is seen and kept in the bound.
CREATE FUNCTION wake_demand_disarm(gone_holder text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('foreman-rt wake hint ' || current_schema(), 0));
    DELETE FROM wake_demand WHERE holder = gone_holder OR expires_at < now() - interval '1 minute';
    PERFORM setval('wake_hint', greatest(1, coalesce(
        (SELECT ceil(extract(epoch FROM max(expires_at)))::bigint FROM wake_demand), 1)));
END $$;

DROP TRIGGER jobs_inserted ON jobs;
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (pg_sequence_last_value('wake_hint'::regclass) >= date_part('epoch', now()))
    EXECUTE FUNCTION notify_jobs_inserted();
