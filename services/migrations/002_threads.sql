-- Conversation threads: the durable copy (Redis holds a hot copy when configured).
CREATE TABLE threads (
    thread_id text PRIMARY KEY,
    user_id text NOT NULL,
    title text NOT NULL DEFAULT '',
    message_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX threads_by_user ON threads (user_id, updated_at DESC, thread_id);

CREATE TABLE messages (
    thread_id text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    seq integer NOT NULL,
    user_id text NOT NULL,
    role text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content text NOT NULL DEFAULT '',
    tool_calls jsonb,
    tool_call_id text,
    input_tokens integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, seq)
);
