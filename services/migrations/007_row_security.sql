-- Row-level security: the second wall between users, behind every query's own user filter.
--
-- The service runs its statements as memory_agent_app (services/db.py sets the role on each
-- connection), which sees only rows whose user_id equals the transaction's app.user_id
-- setting: a query that forgets its WHERE user_id = ... still returns only the caller's
-- rows, and without the setting it sees nothing. Background work that crosses users
-- (embedding, retention, reflection, erasure) runs as memory_agent_jobs. Neither role can
-- log in or bypass row security; a login user (the service account's IAM user on Cloud
-- SQL) is granted both and switches per connection.
DO $$ BEGIN CREATE ROLE memory_agent_app NOLOGIN NOBYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE memory_agent_jobs NOLOGIN NOBYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT memory_agent_app, memory_agent_jobs TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO memory_agent_app, memory_agent_jobs;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO memory_agent_app, memory_agent_jobs;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO memory_agent_app, memory_agent_jobs;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO memory_agent_app, memory_agent_jobs;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO memory_agent_app, memory_agent_jobs;
-- Cloud SQL: IAM database users are members of cloudsqliamserviceaccount; let them switch.
DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'cloudsqliamserviceaccount') THEN GRANT memory_agent_app, memory_agent_jobs TO cloudsqliamserviceaccount; END IF; END $$;
-- Credentials and erasure records are never touched on a caller's behalf.
REVOKE ALL ON api_keys, deletion_requests FROM memory_agent_app;

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON memories TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON memories TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE memory_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON memory_events TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON memory_events TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE threads ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON threads TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON threads TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON messages TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON messages TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON usage TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON usage TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE archived_memories ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON archived_memories TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON archived_memories TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE retention_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON retention_policies TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON retention_policies TO memory_agent_jobs USING (true) WITH CHECK (true);

ALTER TABLE idempotent_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON idempotent_requests TO memory_agent_app USING (user_id = current_setting('app.user_id', true)) WITH CHECK (user_id = current_setting('app.user_id', true));
CREATE POLICY all_rows ON idempotent_requests TO memory_agent_jobs USING (true) WITH CHECK (true);
