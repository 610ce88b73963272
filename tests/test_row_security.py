"""Row-level security: the second wall. The service's queries run as memory_agent_app,
which sees and writes only the rows of the user its transaction names, even when a query
forgets its own user filter."""

from __future__ import annotations

import pytest
from pg8000.exceptions import DatabaseError

from services.db import APP_ROLE, JOBS_ROLE, open_pool
from services.memories.store import MemoryStore
from services.threads import ChatMessage, ThreadStore
from tests.processes import unique_user


@pytest.fixture(scope="module")
def app_pool(settings, pool):  # ``pool`` has run the migrations
    app = open_pool(settings, role=APP_ROLE)
    yield app
    app.close()


@pytest.fixture(scope="module")
def jobs_pool(settings, pool):
    jobs = open_pool(settings, role=JOBS_ROLE)
    yield jobs
    jobs.close()


@pytest.fixture(scope="module")
def two_users(app_pool, embedder):
    store = MemoryStore(app_pool, embedder)
    threads = ThreadStore(app_pool)
    alice, bob = unique_user("alice"), unique_user("bob")
    for user in (alice, bob):
        store.upsert(user, f"{user} keeps a diary", key="diary")
        threads.append(user, None, [ChatMessage("user", f"hello from {user}")])
    return alice, bob


USER_TABLES = [
    "memories",
    "memory_events",
    "threads",
    "messages",
    "usage",
    "archived_memories",
    "retention_policies",
    "idempotent_requests",
]


@pytest.mark.parametrize("table", ["memories", "memory_events", "threads", "messages"])
def test_a_query_without_a_user_filter_still_sees_only_the_callers_rows(app_pool, two_users, table):
    alice, bob = two_users
    with app_pool.transaction(alice) as tx:
        owners = {row[0] for row in tx.execute(f"SELECT user_id FROM {table}")}
    assert owners == {alice}
    with app_pool.transaction() as tx:  # no user named: nothing at all
        assert tx.value(f"SELECT count(*) FROM {table}") == 0


def test_writes_for_another_user_are_refused(app_pool, two_users):
    alice, bob = two_users
    refused = pytest.raises(DatabaseError, match="row-level security")
    with refused, app_pool.transaction(alice) as tx:
        tx.execute(
            "INSERT INTO memories (user_id, key, content, tsv) "
            "VALUES (%s, 'k', 'planted', ''::tsvector)",
            [bob],
        )
    with app_pool.transaction(alice) as tx:  # an unfiltered UPDATE touches only alice
        changed = tx.execute("UPDATE memories SET importance = 0.9 RETURNING user_id")
    assert {row[0] for row in changed} == {alice}
    with app_pool.transaction(alice) as tx:
        assert tx.value("DELETE FROM threads WHERE user_id = %s RETURNING 1", [bob]) is None


def test_the_app_role_cannot_switch_security_off(app_pool, two_users):
    alice, _ = two_users
    with app_pool.transaction(alice) as tx:
        row = tx.one("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert tuple(row) == (False, False)
    with pytest.raises(DatabaseError), app_pool.transaction(alice) as tx:
        tx.execute("SET LOCAL row_security = off")
        tx.execute("SELECT count(*) FROM memories")
    denied = pytest.raises(DatabaseError, match="permission denied")
    with denied, app_pool.transaction(alice) as tx:
        tx.execute("SELECT count(*) FROM api_keys")


def test_every_table_with_user_rows_is_protected(pool):
    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c "
            "JOIN information_schema.columns col ON col.table_name = c.relname "
            "AND col.column_name = 'user_id' AND col.table_schema = 'public' "
            "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"
        )
    protected = {name for name, secured in rows if secured}
    unreachable = {"api_keys", "deletion_requests"}  # the app role has no grant at all
    assert protected | unreachable == {name for name, _ in rows}
    assert set(USER_TABLES) <= protected


def test_background_jobs_see_every_user(jobs_pool, two_users):
    alice, bob = two_users
    with jobs_pool.transaction() as tx:
        owners = {row[0] for row in tx.execute("SELECT user_id FROM memories")}
    assert {alice, bob} <= owners


def test_the_store_works_unchanged_on_the_app_role(app_pool, embedder, two_users):
    alice, bob = two_users
    store = MemoryStore(app_pool, embedder)
    assert [m.user_id for m in store.list(alice).items] == [alice]
    hits = store.search(bob, "diary", mode="lexical")
    assert [hit.memory.user_id for hit in hits] == [bob]


@pytest.mark.parametrize("odd", ["o'brien", "back\\slash", "'; SELECT 1; --", "名前 ü"])
def test_user_ids_with_quotes_scope_the_transaction_exactly(app_pool, embedder, odd):
    store = MemoryStore(app_pool, embedder)
    user = f"{odd}-{unique_user()}"
    store.upsert(user, "mine alone", key="k")
    with app_pool.transaction(user) as tx:
        assert tx.execute("SELECT DISTINCT user_id FROM memories") == [(user,)]


def test_a_one_round_trip_read_is_scoped_to_its_user(app_pool, two_users):
    alice, bob = two_users
    sql = "SELECT user_id FROM memories WHERE key = %s"
    assert {row[0] for row in app_pool.read(sql, ["diary"], alice)} == {alice}
    assert {row[0] for row in app_pool.read(sql, ["diary"], bob)} == {bob}
    assert app_pool.read(sql, ["diary"]) == []  # no user named: nothing at all
