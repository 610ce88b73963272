-- Background reflection (services/reflection.py): how far each thread has been reviewed.
-- Messages with seq < reflected_seq have been reviewed; a thread has work when
-- message_count > reflected_seq. reflection_not_before is both the claim (a lease while a
-- sweep reviews the thread) and the back-off after a failed review.
ALTER TABLE threads
    ADD COLUMN reflected_seq integer NOT NULL DEFAULT 0,
    ADD COLUMN reflected_at timestamptz,
    ADD COLUMN reflection_failures smallint NOT NULL DEFAULT 0,
    ADD COLUMN reflection_not_before timestamptz;

-- Only threads with unreviewed messages are in this index, so finding work costs the same
-- however many reviewed threads exist.
CREATE INDEX threads_to_reflect ON threads (updated_at) WHERE message_count > reflected_seq;
