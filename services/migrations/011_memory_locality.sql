-- Physical locality per user. Users write over time, so one user's rows end up spread over
-- as many heap pages as they have memories, and a user coming back after days reads each
-- of those pages from disk. Marking the per-user btree as the clustering index lets the
-- maintenance commands lay every user's rows out together, in (user_id, namespace, key)
-- order: `CLUSTER memories` (locks the table while it rewrites it) or pg_repack, which
-- rewrites it online in the same order (docs/DEPLOY.md).
ALTER TABLE memories CLUSTER ON memories_user_key;
