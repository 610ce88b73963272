"""The memory store against real PostgreSQL + pgvector and the real local embedder."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from services.embedding_worker import drain
from services.embeddings import duplicate_threshold
from services.errors import Conflict, InvalidInput, NotFound
from services.memories.records import NewMemory
from tests.processes import unique_user


def embed_all(pool, embedder) -> int:
    threshold = duplicate_threshold_for(embedder)
    return drain(pool, embedder, batch_size=64, duplicate_threshold=threshold).embedded


def duplicate_threshold_for(embedder) -> float:
    from services.config import Settings

    return duplicate_threshold(Settings(), embedder.model)


def test_add_get_update_delete_round_trip(store):
    user = unique_user()
    added = store.upsert(user, "Prefers green tea in the morning", key="drink")
    assert added.op == "ADD" and added.memory.version == 1
    fetched = store.get(user, added.memory.id)
    assert fetched.content == "Prefers green tea in the morning"
    assert fetched.key == "drink"

    updated = store.upsert(user, "Prefers black coffee now", key="drink")
    assert updated.op == "UPDATE"
    assert updated.memory.id == added.memory.id
    assert updated.memory.version == 2

    same = store.upsert(user, "Prefers black coffee now", key="drink")
    assert same.op == "UNCHANGED" and same.memory.version == 2

    deleted = store.delete(user, added.memory.id)
    assert deleted.id == added.memory.id
    with pytest.raises(NotFound):
        store.get(user, added.memory.id)

    ops = [event.op for event in store.history(user, added.memory.id)]
    assert ops == ["ADD", "UPDATE", "DELETE"]


def test_stale_version_is_a_conflict_and_changes_nothing(store):
    user = unique_user()
    written = store.upsert(user, "Lives in Lisbon", key="city")
    store.upsert(user, "Lives in Porto", key="city", expected_version=1)
    with pytest.raises(Conflict):
        store.upsert(user, "Lives in Faro", key="city", expected_version=1)
    assert store.get(user, written.memory.id).content == "Lives in Porto"


def test_concurrent_upserts_of_one_key_leave_one_row(store):
    user = unique_user()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            store.upsert(user, f"Favourite number is {n}", key="number")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    page = store.list(user)
    assert len(page.items) == 1
    assert page.items[0].version == 8


def test_users_never_see_each_others_memories(store, pool, embedder):
    alice, bob = unique_user("alice"), unique_user("bob")
    secret = store.upsert(alice, "Alice's locker code is 4512").memory
    store.upsert(bob, "Bob likes hiking")
    embed_all(pool, embedder)

    assert store.search(bob, "locker code") == [] or all(
        hit.memory.user_id == bob for hit in store.search(bob, "locker code")
    )
    assert all(hit.memory.user_id == bob for hit in store.search(bob, "locker code 4512"))
    with pytest.raises(NotFound):
        store.get(bob, secret.id)
    with pytest.raises(NotFound):
        store.delete(bob, secret.id)
    with pytest.raises(NotFound):
        store.upsert(bob, "overwrite", memory_id=secret.id)
    with pytest.raises(NotFound):
        store.history(bob, secret.id)
    assert store.get(alice, secret.id).content == "Alice's locker code is 4512"


def test_hybrid_search_finds_paraphrases_exact_terms_and_chinese(store, pool, embedder):
    user = unique_user()
    store.upsert(user, "Is allergic to peanuts", key="allergy")
    store.upsert(user, "Works as a nurse at St. Mary's hospital", key="job")
    store.upsert(user, "Order number ZX-4471 is delayed", key="order")
    store.upsert(user, "我养了一只叫小白的猫", key="pet")
    store.upsert(user, "Plays the cello on weekends", key="hobby")
    assert embed_all(pool, embedder) >= 5

    def top(query: str, mode: str = "hybrid") -> str:
        hits = store.search(user, query, limit=3, mode=mode)
        assert hits, query
        return hits[0].memory.key

    assert top("what food can't they eat?") == "allergy"
    assert top("ZX-4471") == "order"
    assert top("ZX-4471", mode="lexical") == "order"
    assert top("小白") == "pet"
    assert top("their cat's name") == "pet"  # English query, Chinese memory
    assert top("where do they work", mode="vector") == "job"


def test_memory_is_searchable_lexically_before_it_is_embedded(store):
    user = unique_user()
    store.upsert(user, "Parking spot is B-17 in the north garage", key="parking")
    hits = store.search(user, "B-17 garage")
    assert [hit.memory.key for hit in hits] == ["parking"]
    assert hits[0].vector_rank is None and hits[0].lexical_rank == 1


def test_near_duplicate_is_merged_into_the_older_memory(store, pool, embedder):
    user = unique_user()
    first = store.upsert(user, "The user has a dog named Rex", metadata={"n": 1}).memory
    second = store.upsert(user, "the user has a dog named Rex!", metadata={"n": 2}).memory
    store.upsert(user, "The user has a dog called Rex")  # other words: kept apart
    store.upsert(user, "The user is learning Japanese")
    embed_all(pool, embedder)

    contents = sorted(m.content for m in store.list(user).items)
    assert len(contents) == 3
    survivor = store.get(user, second.id)  # the merged id still resolves
    assert survivor.id == first.id and survivor.content == first.content
    assert survivor.metadata["n"] == 1  # both memories' metadata are kept
    [folded] = survivor.metadata["merged"]
    assert folded["id"] == second.id and folded["metadata"] == {"n": 2}
    assert folded["content"] == "the user has a dog named Rex!"
    merged = [e for e in store.history(user, second.id) if e.op == "MERGED"]
    assert merged[0].old_content == second.content and merged[0].new_content == first.content
    assert merged[0].merged_into == first.id


def test_malformed_memory_id_is_simply_not_found(store):
    user = unique_user()
    with pytest.raises(NotFound) as raised:
        store.upsert(user, "ok", memory_id="not-a-uuid")
    assert raised.value.field == "memory_id"
    assert store.count(user) == 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"content": "x" * 5000}, "content"),
        ({"content": 42}, "content"),
        ({"content": "ok", "importance": 2}, "importance"),
        ({"content": "ok", "metadata": ["not", "an", "object"]}, "metadata"),
        ({"content": "ok", "key": ""}, "key"),
        ({"content": "ok", "namespace": "x" * 300}, "namespace"),
        ({"content": "ok", "expires_at": "tomorrow"}, "expires_at"),
        ({"content": "bad\x00byte"}, "content"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(store, kwargs, field):
    user = unique_user()
    content = kwargs.pop("content")
    with pytest.raises(InvalidInput) as raised:
        store.upsert(user, content, **kwargs)
    assert raised.value.field == field
    assert store.count(user) == 0


@pytest.mark.parametrize("odd", ["_", "%", "50% off", "a.b", "back\\slash", "it's", 'say "hi"'])
def test_ids_with_sql_and_like_metacharacters_are_plain_values(store, odd):
    user = f"user{odd}"
    other = "user" + ("x" if odd != "x" else "y")
    store.upsert(other, "someone else's memory", key=odd)
    written = store.upsert(user, f"memory with key {odd}", key=odd, namespace=f"ns{odd}")
    assert store.get(user, written.memory.id).key == odd
    assert [m.key for m in store.list(user, namespace=f"ns{odd}").items] == [odd]
    assert store.count(user) == 1


def test_non_ascii_user_and_content(store):
    user = "ユーザー-😀"
    written = store.upsert(user, "喜欢吃辣的四川菜 🌶️", key="菜")
    assert store.get(user, written.memory.id).content == "喜欢吃辣的四川菜 🌶️"
    assert store.search(user, "四川菜", mode="lexical")[0].memory.id == written.memory.id


def test_expired_memories_are_invisible_and_their_key_is_reusable(store, pool):
    user = unique_user()
    past = datetime.now(UTC) - timedelta(seconds=1)
    gone = store.upsert(user, "Temporary door code 1234", key="door", expires_at=past).memory
    assert store.list(user).items == []
    assert store.search(user, "door code", mode="lexical") == []
    with pytest.raises(NotFound):
        store.get(user, gone.id)
    fresh = store.upsert(user, "Door code is now 9876", key="door")
    assert fresh.op == "ADD" and fresh.memory.id != gone.id


def test_list_pages_with_a_cursor_without_gaps_or_repeats(store):
    user = unique_user()
    ids = store.add_many(user, [NewMemory(f"fact number {n}") for n in range(25)])
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list(user, limit=10, cursor=cursor)
        seen += [m.id for m in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids)
    with pytest.raises(InvalidInput):
        store.list(user, cursor="garbage!")


def test_store_survives_its_connections_being_killed(store, pool):
    user = unique_user()
    store.upsert(user, "before the restart", key="a")
    with pool.transaction() as tx:
        tx.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    # Every pooled connection except the one we used is dead; reads and writes recover.
    for n in range(10):
        store.upsert(user, f"after the restart {n}", key=f"b{n}")
    assert store.count(user) == 11


def test_search_of_one_user_uses_the_user_index_not_a_scan(store, pool):
    users = [unique_user("bulk") for _ in range(50)]
    for user in users:
        store.add_many(user, [NewMemory(f"note {n} for {user}") for n in range(40)])
    with pool.transaction() as tx:
        tx.execute("ANALYZE memories")
        plan = "\n".join(
            row[0]
            for row in tx.execute(
                "EXPLAIN SELECT id FROM memories m WHERE m.user_id = %s AND m.namespace = %s",
                [users[0], "default"],
            )
        )
    assert "Seq Scan" not in plan, plan


def test_a_conversation_turns_vector_is_stored_in_its_row_not_in_toast(store, pool, embedder):
    # A turn of ~170 characters with its metadata and tsvector is a 2.2 KB row: over the
    # 2 KB at which PostgreSQL would move the (EXTERNAL) vector out to the TOAST table,
    # making every ranking read one TOAST lookup per memory.
    user = unique_user()
    turn = (
        "Caroline: I went to the LGBTQ support group yesterday and it was so powerful. "
        "The stories people shared about their transitions really inspired me to keep going!"
    )
    long_note = "A long note about the garden. " * 120  # 3,600 characters: content moves first
    for n, content in enumerate([turn, long_note]):
        store.upsert(
            user,
            content,
            kind="episode",
            metadata={"speaker": "Caroline", "session": "s1", "position": n, "dia_id": "D1:3"},
        )
    embed_all(pool, embedder)
    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT pg_column_size(m.*), pg_column_toast_chunk_id(m.embedding) IS NULL "
            "FROM memories m WHERE m.user_id = %s ORDER BY length(m.content)",
            [user],
        )
    row_bytes, inline = rows[0]
    assert row_bytes > 2032, "the turn must be large enough that a default table toasts it"
    assert [inline for _, inline in rows] == [True, True]


def test_a_wrong_dimension_vector_rejects_the_whole_batch(store, embedder):
    user = unique_user()
    good = NewMemory("fine", embedding=[0.1] * embedder.dim)
    bad = NewMemory("too short", embedding=[0.1] * (embedder.dim - 1))
    with pytest.raises(InvalidInput):
        store.add_many(user, [good, bad])
    assert store.count(user) == 0
    with pytest.raises(InvalidInput):
        store.search(user, "anything", query_vector=[0.0] * 3)


def test_an_unknown_user_has_nothing_and_can_change_nothing(store):
    ghost = unique_user("ghost")
    assert store.list(ghost).items == []
    assert store.search(ghost, "anything at all") == []
    assert store.count(ghost) == 0
    with pytest.raises(NotFound):
        store.delete(ghost, "00000000-0000-0000-0000-000000000000")
