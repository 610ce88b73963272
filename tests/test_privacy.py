"""Export and erasure of one user's data: PostgreSQL (every table with user_id, including
ones added later), the Redis hot copies, and the archive."""

from __future__ import annotations

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.archive import GcsArchive, LocalArchive, subject_hash, user_prefix
from services.embedding_worker import drain
from services.errors import NotFound
from services.privacy import (
    STEPS,
    erase_user,
    export_user,
    get_deletion_request,
    process_deletion_requests,
    request_deletion,
)
from services.threads import ChatMessage, ThreadStore
from tests.fakes.gcs_server import FakeGcsServer
from tests.processes import free_port, unique_user


@pytest.fixture(scope="module")
def redis_client(redis_server):
    client = redis_lib.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def threads(pool, redis_client):
    return ThreadStore(pool, redis_client)


@pytest.fixture
def archive(tmp_path):
    return LocalArchive(tmp_path)


@pytest.fixture(scope="module")
def later_table(pool):
    """A table another feature adds later: erasure must find it by itself."""
    with pool.transaction() as tx:
        tx.execute("CREATE TABLE feature_notes (id serial PRIMARY KEY, user_id text, note text)")
    return "feature_notes"


def seed(store, threads, archive, pool, later_table, user) -> str:
    memory = store.upsert(user, "Passport number X123", key="passport").memory
    store.upsert(user, "Passport number X124", key="passport")
    thread_id, _ = threads.append(user, None, [ChatMessage("user", "remember my passport")])
    threads.load(user, thread_id)
    archive.write(f"{user_prefix(user)}2020.jsonl", [{"id": "a", "content": "old secret"}])
    with pool.transaction() as tx:
        tx.execute(f"INSERT INTO {later_table} (user_id, note) VALUES (%s, 'n')", [user])
    return memory.id


def rows_about(pool, user) -> dict[str, int]:
    with pool.transaction() as tx:
        tables = [
            r[0]
            for r in tx.execute(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'user_id' "
                "AND table_schema = current_schema()"
            )
        ]
        return {
            t: int(tx.value(f"SELECT count(*) FROM {t} WHERE user_id = %s", [user])) for t in tables
        }


def test_erase_removes_everything_and_records_only_that_it_happened(
    store, pool, embedder, threads, redis_client, archive, later_table
):
    user, bystander = unique_user(), unique_user()
    seed(store, threads, archive, pool, later_table, user)
    seed(store, threads, archive, pool, later_table, bystander)
    drain(pool, embedder, batch_size=64, duplicate_threshold=0.99)

    erasure = erase_user(pool, redis_client, archive, user)

    assert erasure.complete and erasure.pending == () and erasure.done_steps == list(STEPS)
    assert erasure.counts["archive_objects"] == 1 and erasure.counts["redis_keys"] == 1
    assert erasure.counts["rows.memories"] == 1 and erasure.counts[f"rows.{later_table}"] == 1
    assert all(count == 0 for count in rows_about(pool, user).values())
    assert archive.list(user_prefix(user)) == []
    assert not list(redis_client.scan_iter(match=threads._key(user, "*")))
    with pool.transaction() as tx:
        record = tx.one(
            "SELECT status, user_id, subject_hash, counts FROM deletion_requests "
            "WHERE subject_hash = %s",
            [subject_hash(user)],
        )
        text = tx.value(
            "SELECT count(*) FROM deletion_requests WHERE counts::text LIKE %s", ["%Passport%"]
        )
    assert record[:3] == ("done", None, subject_hash(user)) and text == 0
    survivors = rows_about(pool, bystander)
    assert survivors["memories"] == 1 and survivors["memory_events"] == 2
    assert survivors[later_table] == 1 and archive.list(user_prefix(bystander))
    assert list(redis_client.scan_iter(match=threads._key(bystander, "*")))


def test_export_holds_every_table_and_the_archive_without_vectors(
    store, pool, embedder, threads, archive, later_table
):
    user = unique_user()
    memory_id = seed(store, threads, archive, pool, later_table, user)
    drain(pool, embedder, batch_size=64, duplicate_threshold=0.99)
    data = export_user(pool, archive, user)
    tables = data["tables"]
    assert [m["id"] for m in tables["memories"]] == [memory_id]
    assert "embedding" not in tables["memories"][0] and "tsv" not in tables["memories"][0]
    assert [e["op"] for e in tables["memory_events"]] == ["ADD", "UPDATE"]
    assert tables["messages"][0]["content"] == "remember my passport"
    assert len(tables[later_table]) == 1 and "deletion_requests" not in tables
    assert data["archive"] == [{"id": "a", "content": "old secret"}]


def test_erasure_with_redis_down_stays_pending_until_retried(
    store, pool, threads, redis_client, archive, later_table
):
    user = unique_user()
    seed(store, threads, archive, pool, later_table, user)
    request = request_deletion(pool, user)
    dead_redis = redis_lib.Redis(
        port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )

    erasure = erase_user(pool, dead_redis, archive, user)
    assert erasure.id == request.id  # the request filed first is the one carried out
    assert not erasure.complete and erasure.pending == ("redis",)
    assert erasure.done_steps == ["archive", "database"] and "redis" in erasure.last_error
    left = rows_about(pool, user)
    assert left.pop("deletion_requests") == 1  # the pending request still names the user
    assert all(count == 0 for count in left.values())
    pending = get_deletion_request(pool, request.id)
    assert pending.status == "pending" and pending.attempts == 1
    assert list(redis_client.scan_iter(match=threads._key(user, "*")))  # still there

    # The retry loop waits for the backoff; the retention job takes it at once.
    assert process_deletion_requests(
        pool, redis_client, archive, deadline=float("inf"), due_only=True
    ) == (0, 0)
    done, failed = process_deletion_requests(pool, redis_client, archive, deadline=float("inf"))
    assert (done, failed) == (1, 0)
    finished = get_deletion_request(pool, request.id)
    assert finished.status == "done" and finished.pending == () and finished.attempts == 2
    assert finished.counts["redis_keys"] == 1 and finished.counts["rows.memories"] == 1
    assert not list(redis_client.scan_iter(match=threads._key(user, "*")))


def test_what_the_archive_cannot_reach_now_stays_pending_until_a_retry(
    store, pool, threads, later_table, monkeypatch
):
    with FakeGcsServer() as gcs:  # the real client against Cloud Storage's wire protocol
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        archive = GcsArchive("erasure-test", retry_seconds=0.5)
        user = unique_user()
        seed(store, threads, archive, pool, later_table, user)
        gcs.fail_next(1000, 503, method="GET")  # listing the user's objects fails

        erasure = erase_user(pool, threads.redis, archive, user)
        assert erasure.pending == ("archive",) and erasure.status == "pending"
        assert erasure.done_steps == ["database", "redis"]
        assert rows_about(pool, user)["memories"] == 0  # what could be reached is gone

        gcs.heal()
        assert archive.list(user_prefix(user))  # the objects wait for the retry
        again = erase_user(pool, threads.redis, archive, user)  # or the retry loop
        assert again.id == erasure.id and again.complete and again.attempts == 2
        assert archive.list(user_prefix(user)) == []


def test_a_request_is_visible_only_to_its_subject(pool, threads, archive):
    user, other = unique_user(), unique_user()
    erasure = erase_user(pool, threads.redis, archive, user)
    assert get_deletion_request(pool, erasure.id, user).complete
    with pytest.raises(NotFound):
        get_deletion_request(pool, erasure.id, other)
