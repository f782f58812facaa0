-- A tenant's changed jobs are found through one index per state instead of one index over every
-- row: every claim and completion wrote an entry to jobs_tenant_updated (tenant, updated_at),
-- whatever the row's state, since an update that cannot be HOT adds an entry to every index
-- whose predicate the new row version satisfies.
--
-- Now:
-- - pending jobs: jobs_pending_changed (tenant, updated_at) WHERE status = 'pending', written
--   when a job is enqueued, retried or requeued, never by a claim or a completion;
-- - running jobs: jobs_lease (every running job; as many as the workers' slots), filtered;
-- - terminal jobs: jobs_completed, now (completed_at, tenant), since a terminal job's
--   updated_at is its completed_at (both are set by the statement that ends it, and nothing
--   changes a terminal job but a retry, which makes it pending). Retention still walks it in
--   completed_at order; the tenant is checked in the index, without visiting rows.
-- A claim and a completion each write one index entry less.

DROP INDEX jobs_tenant_updated;
CREATE INDEX jobs_pending_changed ON jobs (tenant, updated_at) WHERE status = 'pending';
DROP INDEX jobs_completed;
CREATE INDEX jobs_completed ON jobs (completed_at, tenant)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
