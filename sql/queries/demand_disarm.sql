-- Stop wanting insert notifications (holder $1); expired rows of dead holders go too, and
-- wake_hint comes down to the rows left (migration 0012).
SELECT wake_demand_disarm($1)
