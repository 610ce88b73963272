-- A caller may read the record of their own erasure requests (GET /v1/me/erasure/{id}) on
-- the user-scoped role, and only read it: filing and carrying out a request is work for
-- memory_agent_jobs. A carried-out request no longer names its user, only the SHA-256 of
-- the user id (services/archive.py subject_hash), so the policy compares that hash with
-- the hash of the transaction's app.user_id; without the setting it matches nothing.
GRANT SELECT ON deletion_requests TO memory_agent_app;
ALTER TABLE deletion_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_requests ON deletion_requests FOR SELECT TO memory_agent_app USING (subject_hash = encode(sha256(convert_to(current_setting('app.user_id', true), 'UTF8')), 'hex'));
CREATE POLICY all_rows ON deletion_requests TO memory_agent_jobs USING (true) WITH CHECK (true);
