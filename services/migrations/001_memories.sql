-- Memories and their append-only history. {{EMBEDDING_DIM}} is filled in from the
-- configured embedding model when the database is first created (see services/migrate.py).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE app_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE memories (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id text NOT NULL,
    namespace text NOT NULL DEFAULT 'default',
    key text NOT NULL,
    content text NOT NULL,
    context text NOT NULL DEFAULT '',
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    importance real NOT NULL DEFAULT 0.5,
    embedding vector({{EMBEDDING_DIM}}),
    embedding_model text,
    tsv tsvector NOT NULL,
    dedup_pending boolean NOT NULL DEFAULT false,
    observed_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_accessed_at timestamptz,
    access_count integer NOT NULL DEFAULT 0,
    expires_at timestamptz,
    version integer NOT NULL DEFAULT 1,
    -- The unique btree doubles as the per-user access path: (user_id, namespace) prefix.
    CONSTRAINT memories_user_key UNIQUE (user_id, namespace, key)
);

-- The embedding outbox: rows still waiting for a vector, oldest first.
CREATE INDEX memories_pending ON memories (updated_at) WHERE embedding IS NULL;
CREATE INDEX memories_expiring ON memories (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE memory_events (
    id bigserial PRIMARY KEY,
    memory_id uuid NOT NULL,
    user_id text NOT NULL,
    namespace text NOT NULL,
    key text NOT NULL,
    op text NOT NULL CHECK (op IN ('ADD', 'UPDATE', 'DELETE', 'MERGED')),
    old_content text,
    new_content text,
    old_context text,
    new_context text,
    version integer NOT NULL,
    actor text NOT NULL,
    request_id text,
    -- When the old text stopped being true (an update supersedes it).
    superseded_at timestamptz,
    merged_into uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX memory_events_by_memory ON memory_events (user_id, memory_id, id);
