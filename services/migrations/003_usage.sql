-- One row per LLM or embedding call: tokens, cost in USD (from the price table at the time
-- of the call), latency, and who/what it was for. Written by services/usage.py.
CREATE TABLE usage (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    user_id text NOT NULL,
    request_id text,
    thread_id text,
    kind text NOT NULL CHECK (kind IN ('chat', 'embedding')),
    provider text NOT NULL,
    model text NOT NULL,
    input_tokens integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens integer NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens integer NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cost_usd numeric(14, 8) NOT NULL DEFAULT 0,
    -- false: the model is not in the price table, cost_usd is 0 and should be checked
    price_known boolean NOT NULL DEFAULT true,
    latency_ms real NOT NULL DEFAULT 0
);

CREATE INDEX usage_by_user ON usage (user_id, created_at);
CREATE INDEX usage_by_time ON usage (created_at);
