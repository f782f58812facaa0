-- The live key with this hash.
SELECT id, tenant, scopes, rate_per_second, burst FROM api_keys
WHERE key_hash = $1 AND revoked_at IS NULL
