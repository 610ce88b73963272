"""Thread checkpoints: PostgreSQL is durable, Redis a hot copy that may vanish at any time."""

from __future__ import annotations

import pytest

from services.errors import InvalidInput, NotFound
from services.threads import ChatMessage, RedisGuard, ThreadStore, retry_cache_purges
from tests.processes import unique_user


@pytest.fixture
def threads(pool, redis_client) -> ThreadStore:
    # A zero cooldown retries Redis on every call, so the tests see recovery immediately.
    return ThreadStore(pool, redis_client, ttl_seconds=60, guard=RedisGuard(cooldown=0))


def turn(n: int) -> list[ChatMessage]:
    return [
        ChatMessage("user", f"question {n}", input_tokens=3),
        ChatMessage(
            "assistant",
            f"answer {n}",
            tool_calls=[{"name": "upsert_memory", "arguments": {"content": f"fact {n}"}}],
            output_tokens=5,
        ),
    ]


def contents(messages: list[ChatMessage]) -> list[str]:
    return [m.content for m in messages]


def test_append_and_load_round_trip_with_tool_calls(threads):
    user = unique_user()
    thread_id, stored = threads.append(user, None, turn(0), title="first")
    assert [m.seq for m in stored] == [0, 1]
    threads.append(user, thread_id, turn(1))
    loaded = threads.load(user, thread_id, last_n=3)
    assert contents(loaded) == ["answer 0", "question 1", "answer 1"]
    assert loaded[-1].tool_calls == [{"name": "upsert_memory", "arguments": {"content": "fact 1"}}]
    assert loaded[0].output_tokens == 5
    thread = threads.get(user, thread_id)
    assert thread.message_count == 4 and thread.title == "first"


def test_reads_are_served_from_redis_once_warm(threads, redis_client):
    user = unique_user()
    thread_id, _ = threads.append(user, None, turn(0))
    key = threads._key(user, thread_id)
    assert redis_client.llen(key) == 2  # written through
    assert 0 < redis_client.ttl(key) <= 60


def test_a_redis_flush_loses_nothing(threads, redis_client):
    user = unique_user()
    thread_id, _ = threads.append(user, None, turn(0))
    redis_client.flushall()
    threads.append(user, thread_id, turn(1))  # the cache is cold: not partially filled
    assert contents(threads.load(user, thread_id)) == [
        "question 0",
        "answer 0",
        "question 1",
        "answer 1",
    ]
    assert redis_client.llen(threads._key(user, thread_id)) == 4  # refilled from PostgreSQL


def test_a_redis_outage_fails_no_request_and_loses_nothing(threads, redis_server):
    user = unique_user()
    thread_id, _ = threads.append(user, None, turn(0))
    redis_server.stop()
    try:
        threads.append(user, thread_id, turn(1))
        assert len(threads.load(user, thread_id)) == 4
    finally:
        redis_server.start()
    # The copy in Redis missed the write during the outage: it must not be served stale.
    threads.append(user, thread_id, turn(2))
    assert contents(threads.load(user, thread_id))[-2:] == ["question 2", "answer 2"]
    assert len(threads.load(user, thread_id)) == 6


def test_stale_cache_after_missed_write_is_detected(pool, redis_client):
    user = unique_user()
    cached = ThreadStore(pool, redis_client, guard=RedisGuard(cooldown=0))
    uncached = ThreadStore(pool, None)  # e.g. a process that could not reach Redis
    thread_id, _ = cached.append(user, None, turn(0))
    uncached.append(user, thread_id, turn(1))
    assert contents(cached.load(user, thread_id))[-1] == "answer 1"


def test_threads_are_private_to_their_owner(threads):
    alice, bob = unique_user("alice"), unique_user("bob")
    thread_id, _ = threads.append(alice, None, turn(0))
    with pytest.raises(NotFound):
        threads.load(bob, thread_id)
    with pytest.raises(NotFound):
        threads.append(bob, thread_id, turn(1))  # cannot write into someone else's thread
    with pytest.raises(NotFound):
        threads.delete(bob, thread_id)
    assert threads.list(bob) == []
    assert len(threads.load(alice, thread_id)) == 2


def test_list_pages_and_delete_removes_both_copies(threads, redis_client):
    user = unique_user()
    ids = [threads.append(user, None, turn(n))[0] for n in range(5)]
    first = threads.list(user, limit=3)
    rest = threads.list(user, limit=3, before=first[-1].thread_id)
    assert [t.thread_id for t in first + rest] == ids[::-1]
    threads.delete(user, ids[0])
    assert redis_client.exists(threads._key(user, ids[0])) == 0
    with pytest.raises(NotFound):
        threads.load(user, ids[0])


@pytest.mark.parametrize(
    "thread_id, messages, field",
    [
        ("bad id!", turn(0), "thread_id"),
        ("x" * 65, turn(0), "thread_id"),
        (None, [ChatMessage("wizard", "hi")], "role"),
        (None, [ChatMessage("user", "nul\x00")], "content"),
        (None, [ChatMessage("user", "hi", input_tokens=-1)], "input_tokens"),
    ],
)
def test_bad_messages_are_refused_before_anything_is_written(threads, thread_id, messages, field):
    user = unique_user()
    with pytest.raises(InvalidInput) as raised:
        threads.append(user, thread_id, messages)
    assert raised.value.field == field
    assert threads.list(user) == []


def test_a_thread_deleted_while_redis_is_down_leaves_no_copy_once_it_is_back(
    pool, redis_client, redis_server
):
    user = unique_user()
    threads = ThreadStore(pool, redis_client, guard=RedisGuard(cooldown=0))
    thread_id, _ = threads.append(user, None, turn(0))
    threads.load(user, thread_id)
    key = threads._key(user, thread_id)
    assert redis_client.exists(key)
    redis_server.stop()
    try:
        assert threads.delete(user, thread_id) is False  # gone from PostgreSQL, copy pending
        assert retry_cache_purges(pool, redis_client) == (0, 1)  # still down: backed off
    finally:
        redis_server.start()
    # A restarted redis-server has lost the copy anyway; put one back to prove the purge.
    redis_client.rpush(key, "left over from before the outage")
    with pool.transaction() as tx:  # the backoff has not passed yet: make it due now
        tx.execute("UPDATE cache_purges SET next_attempt_at = now() WHERE redis_key = %s", [key])
    assert retry_cache_purges(pool, redis_client) == (1, 0)
    assert not redis_client.exists(key)
    with pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM cache_purges WHERE redis_key = %s", [key]) == 0
    second, _ = threads.append(user, None, turn(0))
    assert threads.delete(user, second) is True  # Redis up: done at once, nothing remembered
    with pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM cache_purges WHERE user_id = %s", [user]) == 0
