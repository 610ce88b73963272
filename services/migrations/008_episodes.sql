-- Episodic memory: conversation turns stored beside extracted facts, in the same table, so
-- row-level security, export, erasure, retention and the embedding outbox cover them with
-- no second code path. 'fact' is what the model (or an API client) chose to remember;
-- 'episode' is something said in a conversation (the user's message or the answer).
ALTER TABLE memories ADD COLUMN kind text NOT NULL DEFAULT 'fact'
    CHECK (kind IN ('fact', 'episode'));
