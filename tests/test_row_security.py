"""Row-level security: the second wall. The service's queries run as memory_agent_app,
which sees and writes only the rows of the user its transaction names, even when a query
forgets its own user filter."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pg8000.exceptions import DatabaseError

from services.archive import subject_hash
from services.db import APP_ROLE, JOBS_ROLE, Pool, open_pool
from services.llm.types import Usage
from services.memories.store import MemoryStore
from services.runtime import Runtime, build_runtime
from services.threads import ChatMessage, ThreadStore
from services.usage import UsageRecord, UsageRecorder
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


# ---- the runtime's services: user-scoped ones cannot reach past their user -----------------


@pytest.fixture(scope="module")
def runtime(settings, pool, tmp_path_factory):
    data = tmp_path_factory.mktemp("runtime-data")
    built = build_runtime(replace(settings, data_dir=str(data)), start_worker=False)
    yield built
    built.close()


@pytest.fixture(scope="module")
def everywhere(pool, two_users):
    """Rows of both users in every table that holds user rows (written as the login user,
    whom row security does not apply to)."""
    alice, bob = two_users
    for user in (alice, bob):
        UsageRecorder(pool).record(
            [UsageRecord(user, "chat", "openai", "gpt-4o-mini", Usage(10, 2, 0, 0))]
        )
        with pool.transaction() as tx:
            tx.execute(
                "INSERT INTO archived_memories (memory_id, user_id, namespace, key, object_name) "
                "VALUES (gen_random_uuid(), %s, 'default', 'k', 'objects/x.jsonl')",
                [user],
            )
            tx.execute("INSERT INTO retention_policies (user_id, max_count) VALUES (%s, 5)", [user])
            tx.execute(
                "INSERT INTO idempotent_requests (user_id, key, request_hash) "
                "VALUES (%s, 'key', 'hash')",
                [user],
            )
            tx.execute(
                "INSERT INTO cache_purges (user_id, redis_key) VALUES (%s, 'thread:x')", [user]
            )
            # A carried-out request names its user only by the hash of the id.
            tx.execute(
                "INSERT INTO deletion_requests (user_id, subject_hash, status) "
                "VALUES (NULL, %s, 'done')",
                [subject_hash(user)],
            )
    return alice, bob


def user_scoped_pools(runtime: Runtime) -> dict[str, Pool]:
    assert runtime.usage is not None
    return {
        "memories": runtime.memories.pool,
        "threads": runtime.threads.pool,
        "usage": runtime.usage.pool,
        "account": runtime.account.pool,
        "idempotency": runtime.idempotency.pool,
    }


def tables_with_user_rows(pool: Pool) -> set[str]:
    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'user_id'"
        )
    return {row[0] for row in rows} - {"api_keys"}  # credentials: no grant to the app role


def owner_of_rows(table: str) -> str:
    # A carried-out erasure request keeps only the hash of its subject.
    return "subject_hash" if table == "deletion_requests" else "user_id"


def test_user_services_run_as_the_app_role_and_cross_user_ones_as_jobs(runtime):
    for service, service_pool in user_scoped_pools(runtime).items():
        assert service_pool.role == APP_ROLE, service
    assert runtime.pool.role == JOBS_ROLE
    assert runtime.erasure.pool.role == JOBS_ROLE


def test_a_user_service_that_forgets_its_filter_sees_only_its_user(runtime, pool, everywhere):
    alice, bob = everywhere
    tables = tables_with_user_rows(pool)
    assert {"usage", "cache_purges", "deletion_requests", *USER_TABLES} <= tables
    for service, service_pool in user_scoped_pools(runtime).items():
        for table in sorted(tables):
            column = owner_of_rows(table)
            expected = subject_hash(alice) if column == "subject_hash" else alice
            with service_pool.transaction(alice) as tx:  # deliberately no WHERE user_id
                owners = {row[0] for row in tx.execute(f"SELECT {column} FROM {table}")}
            assert owners == {expected}, (service, table)


def test_the_app_role_may_read_but_never_file_an_erasure_record(runtime, everywhere):
    alice, _ = everywhere
    denied = pytest.raises(DatabaseError, match="permission denied")
    with denied, runtime.user_pool.transaction(alice) as tx:
        tx.execute(
            "INSERT INTO deletion_requests (user_id, subject_hash) VALUES (%s, %s)",
            [alice, subject_hash(alice)],
        )
    with runtime.user_pool.transaction() as tx:  # no user named: no request at all
        assert tx.value("SELECT count(*) FROM deletion_requests") == 0


def test_a_callers_usage_report_counts_only_the_caller(runtime, everywhere):
    alice, _ = everywhere
    with runtime.pool.transaction() as tx:
        since, until = tx.one("SELECT now() - interval '1 day', now() + interval '1 minute'")
    report = runtime.account.usage(alice, since, until)
    assert [row.key for row in report.by_user] == [(alice,)]
    assert report.turns.users == 1
