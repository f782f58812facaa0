-- API keys for the HTTP service: stored as SHA-256 of the key (keys are 256-bit random, so a
-- fast hash is enough), each bound to one tenant, with scopes and an optional rate limit.
CREATE TABLE api_keys (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text        NOT NULL,
    name           text,
    prefix         text        NOT NULL,
    key_hash       text        NOT NULL,
    scopes         text[]      NOT NULL DEFAULT ARRAY['enqueue', 'read', 'work', 'cancel'],
    rate_per_second double precision,
    burst          integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CONSTRAINT api_keys_hash UNIQUE (key_hash),
    CONSTRAINT api_keys_tenant_check CHECK (length(tenant) BETWEEN 1 AND 128),
    CONSTRAINT api_keys_scopes_check
        CHECK (scopes <@ ARRAY['enqueue', 'read', 'work', 'cancel']::text[]),
    CONSTRAINT api_keys_rate_check
        CHECK (coalesce(rate_per_second, 1) > 0 AND coalesce(burst, 1) >= 1)
);

-- Dashboards list a tenant's recently changed jobs when a stream resumes.
CREATE INDEX jobs_tenant_updated ON jobs (tenant, updated_at);
