"""Episodic memory end to end: every chat turn becomes two searchable episodes (real SDKs
against the wire fake, real PostgreSQL + pgvector, the real embedder and outbox); a later
thread's prompt shows them after the facts; the offline answer uses them; row-level
security, expiry and the setting that turns them off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.agent import Agent, AgentConfig
from services.archive import LocalArchive
from services.db import APP_ROLE, open_pool
from services.embedding_worker import drain
from services.llm import AnthropicProvider, OfflineProvider, RetryPolicy, Router
from services.memories.store import MemoryStore
from services.retention import RetentionJob, RetentionPolicy, run_retention
from services.retrieval import retrieve
from services.threads import ThreadStore
from tests.agent_turns import respond
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.processes import unique_user

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def fake():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def threads(pool):
    return ThreadStore(pool)


def agent(store, threads, fake=None, **config) -> Agent:
    providers = [] if fake is None else [
        AnthropicProvider("test-key", base_url=fake.anthropic_base_url, timeout=5.0)
    ]  # fmt: skip
    router = Router(providers, retry=RetryPolicy(max_retries=0), fallback=OfflineProvider())
    return Agent(store, threads, router, config=AgentConfig(**config), clock=lambda: NOW)


def system_text(request) -> str:
    """The per-turn part of the system prompt (time, memories, episodes)."""
    text = "\n".join(block["text"] for block in request.body.get("system", []))
    return text[text.index("Current time:") :]


def test_a_turn_becomes_two_episodes_found_from_another_thread(
    store, threads, pool, embedder, fake
):
    fake.reset()
    user = unique_user("episodes")
    fake.script(
        "anthropic",
        Reply(text="Lovely! Porto in spring is a good time to move."),
        Reply(text="She is moving to Porto next spring, you said."),
    )
    first = respond(
        agent(store, threads, fake), user, None, "My sister Maria is moving to Porto next spring."
    )
    episodes = store.list(user, kind="episode").items
    assert {(m.metadata["speaker"], m.content) for m in episodes} == {
        ("user", "My sister Maria is moving to Porto next spring."),
        ("assistant", "Lovely! Porto in spring is a good time to move."),
    }
    thread_id = first.final.thread_id
    assert {m.metadata["thread_id"] for m in episodes} == {thread_id}
    positions = sorted(m.metadata["position"] for m in episodes)
    assert positions[1] == positions[0] + 1 and all(m.observed_at == NOW for m in episodes)
    assert store.list(user, kind="fact").items == []  # no fact was saved: the model called no tool
    store.upsert(user, "The user's sister is called Maria.")
    drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)

    second = respond(agent(store, threads, fake), user, None, "Where is my sister moving?")
    context = system_text(fake.requests_for("anthropic")[-1])
    facts_at, episodes_at = context.index("<memories>"), context.index("<episodes>")
    assert facts_at < episodes_at  # facts first, then the episodes
    assert "sister is called Maria" in context[facts_at:episodes_at]
    assert "user: My sister Maria is moving to Porto" in context[episodes_at:]
    assert second.final.thread_id != thread_id


def test_the_same_threads_episodes_in_the_history_are_not_repeated(
    store, threads, pool, embedder, fake
):
    fake.reset()
    user = unique_user("window")
    fake.script("anthropic", Reply(text="Noted: the blue bike."), Reply(text="The blue one."))
    first = respond(agent(store, threads, fake), user, None, "I bought a blue bike today.")
    drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)
    respond(agent(store, threads, fake), user, first.final.thread_id, "Which bike did I buy?")
    context = system_text(fake.requests_for("anthropic")[-1])
    assert "<episodes>" not in context  # they are in the messages already


def test_the_offline_answer_lists_what_was_said(store, threads, pool, embedder, fake):
    fake.reset()
    user = unique_user("offline")
    fake.script("anthropic", Reply(text="Got it."))
    respond(agent(store, threads, fake), user, None, "My locker code at the gym is 4471.")
    drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)
    offline = respond(agent(store, threads), user, None, "What is my gym locker code?")
    assert offline.final.offline
    assert "My locker code at the gym is 4471." in offline.text
    # the offline answer itself is not kept as something the assistant said
    said = {(m.metadata["speaker"], m.content) for m in store.list(user, kind="episode").items}
    assert not any(speaker == "assistant" and "automatic" in text for speaker, text in said)


def test_episodes_can_be_turned_off(store, threads, fake):
    fake.reset()
    user = unique_user("off")
    fake.script("anthropic", Reply(text="Hello."))
    respond(agent(store, threads, fake, episodes=False), user, None, "Hi there")
    assert store.count(user, kind="episode") == 0
    assert len(threads.load(user, threads.list(user)[0].thread_id)) == 2  # the thread is kept


def test_episodes_are_private_under_row_level_security(settings, pool, embedder, threads, fake):
    fake.reset()
    app_pool = open_pool(settings, role=APP_ROLE)
    try:
        store = MemoryStore(app_pool, embedder)
        alice, bob = unique_user("alice"), unique_user("bob")
        fake.script("anthropic", Reply(text="Noted."))
        respond(agent(store, ThreadStore(app_pool), fake), alice, None, "My passport number is X9.")
        drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)
        assert retrieve(store, bob, "passport number").hits == []
        with app_pool.transaction(bob) as tx:  # no user filter: RLS alone keeps them apart
            assert tx.value("SELECT count(*) FROM memories WHERE kind = 'episode'") == 0
        with app_pool.transaction(alice) as tx:
            assert tx.value("SELECT count(*) FROM memories WHERE kind = 'episode'") == 2
    finally:
        app_pool.close()


def test_episodes_expire_with_their_ttl(store, threads, pool, embedder, fake, tmp_path):
    fake.reset()
    user = unique_user("ttl")
    fake.script("anthropic", Reply(text="Sure."))
    respond(agent(store, threads, fake, episode_ttl_days=30), user, None, "Remind me about tea.")
    episodes = store.list(user, kind="episode").items
    assert {m.expires_at for m in episodes} == {NOW + timedelta(days=30)}
    keep_all = RetentionPolicy(
        max_age_days=0, max_count=0, importance_floor=1.01, archive_after_days=0, thread_idle_days=0
    )
    job = RetentionJob(pool, LocalArchive(tmp_path), threads, keep_all, embedder.model)
    run_retention(job, budget_seconds=60, now=NOW + timedelta(days=31))
    with pool.transaction() as tx:
        left = tx.value("SELECT count(*) FROM memories WHERE user_id = %s", [user])
    assert left == 0
