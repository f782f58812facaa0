-- Stop wanting insert notifications (holder $1); expired rows of dead holders go too.
DELETE FROM wake_demand WHERE holder = $1 OR expires_at < now() - interval '1 minute'
