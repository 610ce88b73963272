-- Durable erasure (services/privacy.py, services/threads.py).
--
-- A deletion request is committed before anything is erased and names the steps still to
-- do ('archive', 'database', 'redis'); whatever could not be reached is retried by the
-- in-process retry loop and by the retention job until the list is empty. next_attempt_at
-- is both a backoff after a failed attempt and a lease while an attempt is under way.
ALTER TABLE deletion_requests
    ADD COLUMN pending text[] NOT NULL DEFAULT '{archive,database,redis}',
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();

UPDATE deletion_requests SET pending = '{}' WHERE status <> 'pending';

CREATE INDEX deletion_requests_due ON deletion_requests (next_attempt_at)
    WHERE status = 'pending';

-- Redis hot copies of deleted threads that Redis could not drop at the time: remembered in
-- the same transaction as the deletion, deleted from Redis by the retry loop and the
-- retention job, then forgotten. Only the key is kept (an owner hash and a thread id).
CREATE TABLE cache_purges (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    redis_key text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cache_purges_due ON cache_purges (next_attempt_at);

ALTER TABLE cache_purges ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON cache_purges TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON cache_purges TO memory_agent_jobs USING (true) WITH CHECK (true);
