-- Retention, archives and data-deletion requests (services/retention.py, services/privacy.py).

-- Per-user overrides of the retention defaults in Settings; NULL means "use the default".
CREATE TABLE retention_policies (
    user_id text PRIMARY KEY,
    max_age_days integer CHECK (max_age_days >= 0),
    max_count integer CHECK (max_count >= 0),
    importance_floor real CHECK (importance_floor >= 0),
    archive_after_days integer CHECK (archive_after_days >= 0),
    thread_idle_days integer CHECK (thread_idle_days >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where each archived memory lives (one JSONL object holds many); restore reads it back.
CREATE TABLE archived_memories (
    memory_id uuid PRIMARY KEY,
    user_id text NOT NULL,
    namespace text NOT NULL,
    key text NOT NULL,
    object_name text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX archived_memories_by_user ON archived_memories (user_id, archived_at);

-- Erasure requests. user_id is kept only while pending: once carried out, the row keeps
-- nothing but a hash of the subject, the times and the counts (proof that it happened).
CREATE TABLE deletion_requests (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id text,
    subject_hash text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX deletion_requests_pending ON deletion_requests (requested_at)
    WHERE status = 'pending';

-- Progress of the retention sweep: the users are visited in user_id order, a chunk per
-- transaction; the cursor survives a run cut short by its time budget.
CREATE TABLE retention_state (
    job text PRIMARY KEY,
    cursor text NOT NULL DEFAULT '',
    pass_started_at timestamptz,
    last_pass_completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE retention_runs (
    id bigserial PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    complete boolean NOT NULL DEFAULT false,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb
);
