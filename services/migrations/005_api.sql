-- API keys (only a SHA-256 of the secret is stored) and idempotent chat requests.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    name text NOT NULL DEFAULT '',
    secret_hash text NOT NULL,
    -- A service key may act for users of its own: X-Act-As-User: bob means user "owner:bob".
    service boolean NOT NULL DEFAULT false,
    rate_limit_per_minute integer CHECK (rate_limit_per_minute > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX api_keys_by_user ON api_keys (user_id);

-- The first result of a chat request sent with an Idempotency-Key; a retry gets it back.
CREATE TABLE idempotent_requests (
    user_id text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    response jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotent_requests_by_time ON idempotent_requests (created_at);
