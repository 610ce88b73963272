"""Background reflection end to end: real SDKs against the wire-level LLM fake, real
PostgreSQL, the real local embedder, and the sweep invoked through functions-framework with
the CloudEvent Cloud Scheduler's push produces (terraform/scheduler.tf)."""

from __future__ import annotations

import base64
import json
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import functions_framework
import pytest

from services.agent import Agent
from services.archive import LocalArchive
from services.config import Settings
from services.llm import AnthropicProvider, OfflineProvider, OpenAIProvider, RetryPolicy, Router
from services.memories.store import MemoryStore
from services.reflection import ReflectionConfig, Reflector
from services.runtime import Runtime
from services.threads import ChatMessage, ThreadStore
from services.usage import UsageRecorder
from tests.fakes.llm_server import Failure, Reply, ToolUse
from tests.processes import unique_user

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BOTH = pytest.mark.parametrize("kind", ["anthropic", "openai"])
LATER = timedelta(hours=1)  # the sweep's clock: every thread written in a test is idle


@pytest.fixture(scope="module")
def threads(pool):
    return ThreadStore(pool)


@pytest.fixture(scope="module")
def usage(pool):
    return UsageRecorder(pool)


@pytest.fixture(autouse=True)
def nothing_pending(pool):
    """Each test sees only its own threads as work (the database is shared by the module)."""
    with pool.transaction() as tx:
        tx.execute(
            "UPDATE threads SET reflected_seq = message_count, reflection_failures = 0, "
            "reflection_not_before = NULL"
        )


def make_router(fake, order=("anthropic",)) -> Router:
    made = {
        "anthropic": lambda: AnthropicProvider(
            "test-key", base_url=fake.anthropic_base_url, timeout=5
        ),
        "openai": lambda: OpenAIProvider("test-key", base_url=fake.openai_base_url, timeout=5),
    }
    return Router(
        [made[name]() for name in order],
        retry=RetryPolicy(max_retries=0),
        sleep=lambda s: None,
        fallback=OfflineProvider(),
    )


def reflector(pool, store, router, usage=None, *, later=LATER, **config) -> Reflector:
    clock_at = datetime.now(UTC) + later
    return Reflector(
        pool, store, router, usage, config=ReflectionConfig(**config), clock=lambda: clock_at
    )


def conversation(threads, user, *turns: tuple[str, str], thread_id=None) -> str:
    messages = []
    for said, answered in turns:
        messages += [ChatMessage("user", said), ChatMessage("assistant", answered)]
    thread_id, _ = threads.append(user, thread_id, messages, title=turns[0][0][:40])
    return thread_id


def thread_state(pool, thread_id):
    with pool.transaction() as tx:
        return tx.one(
            "SELECT reflected_seq, message_count, reflection_failures, reflection_not_before "
            "FROM threads WHERE thread_id = %s",
            [thread_id],
        )


def prompt_of(request) -> tuple[str, str]:
    """(system text, first user message text) of a recorded request, either provider."""
    body = request.body
    if request.provider == "anthropic":
        system = "\n".join(block["text"] for block in body["system"])
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else "".join(b.get("text", "") for b in first)
    else:
        system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return system, text


def tool_names(request) -> list[str]:
    tools = request.body["tools"]
    if request.provider == "anthropic":
        return [t["name"] for t in tools]
    return [t["function"]["name"] for t in tools]


def contents(store, user) -> set[str]:
    return {m.content for m in store.list(user, limit=100).items}


# ---- the main promise -------------------------------------------------------------------------


@BOTH
def test_a_conversation_without_tool_calls_becomes_the_expected_memories(
    fake, pool, store, threads, usage, kind
):
    user = unique_user("carol")
    porto = store.upsert(user, "Lives in Porto", context="said in March").memory
    spanish = store.upsert(user, "Is learning Spanish", context="new year's plan").memory
    thread_id = conversation(
        threads,
        user,
        ("I moved to Lisbon last month!", "Congratulations on the move!"),
        ("Also I gave up on Spanish, and I'm vegetarian now.", "Good for you."),
    )
    said_at = threads.load(user, thread_id)[2].created_at  # the last user message
    fake.script(
        kind,
        Reply(
            text="",
            tool_calls=[
                ToolUse("upsert_memory", {"content": "Is vegetarian", "context": "said in chat"}),
                ToolUse(
                    "upsert_memory",
                    {"content": "Lives in Lisbon", "context": "moved", "memory_id": porto.id},
                ),
                ToolUse("delete_memory", {"memory_id": spanish.id}),
            ],
        ),
        Reply(text="Memories updated."),
    )
    report = reflector(pool, store, make_router(fake, (kind,)), usage).run()

    assert contents(store, user) == {"Lives in Lisbon", "Is vegetarian"}
    assert store.get(user, porto.id).content == "Lives in Lisbon"  # updated in place
    assert [(e.op, e.actor) for e in store.history(user, porto.id)] == [
        ("ADD", "api"),
        ("UPDATE", "reflection"),
    ]
    assert [(e.op, e.actor) for e in store.history(user, spanish.id)][-1] == (
        "DELETE",
        "reflection",
    )
    (added,) = [m for m in store.list(user).items if m.content == "Is vegetarian"]
    assert added.observed_at.isoformat() == said_at  # when it was said, not when reviewed
    assert store.history(user, added.id)[0].request_id.startswith("reflection-")

    # what the model was shown: the transcript, the saved memories with ids, the tools
    first, second = fake.requests_for(kind)
    system, text = prompt_of(first)
    assert "I moved to Lisbon last month!" in text and "vegetarian now" in text
    assert "<conversation>" in text and "Congratulations on the move!" in text
    assert f"[{porto.id}] Lives in Porto" in system and spanish.id in system
    assert tool_names(first) == ["upsert_memory", "delete_memory", "search_memory"]
    assert [r["ok"] for r in second.tool_results()] == [True, True, True]

    assert report.counts["threads.reflected"] == 1 and report.counts["model_calls"] == 2
    assert report.counts["memories.add"] == 1 and report.counts["memories.update"] == 1
    assert report.counts["memories.delete"] == 1
    assert set(report.changed_ids) == {added.id, porto.id}
    reflected_seq, count, failures, _ = thread_state(pool, thread_id)
    assert reflected_seq == count == 4 and failures == 0

    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT kind, provider, thread_id, request_id FROM usage WHERE user_id = %s",
            [user],
        )
    assert rows == [("chat", kind, thread_id, None)] * 2  # spend, but not a chat turn


def test_a_thread_is_not_reviewed_again_until_new_messages_arrive(
    fake, pool, store, threads, usage
):
    user = unique_user()
    thread_id = conversation(threads, user, ("My sister is called Ines.", "Nice name."))
    fake.script(
        "anthropic",
        Reply(
            text="",
            tool_calls=[ToolUse("upsert_memory", {"content": "Has a sister, Ines", "context": ""})],
        ),
        Reply(text="Done."),
    )
    router = make_router(fake)
    assert reflector(pool, store, router, usage).run().counts["threads.reflected"] == 1
    assert len(fake.requests) == 2

    again = reflector(pool, store, router, usage).run()
    assert not again.threads and len(fake.requests) == 2  # no model call at all

    conversation(threads, user, ("I start a new job on Monday.", "Good luck!"), thread_id=thread_id)
    fake.script("anthropic", Reply(text="nothing to change"))
    third = reflector(pool, store, router, usage).run()
    assert [t.thread_id for t in third.threads] == [thread_id]
    system, text = prompt_of(fake.requests[-1])
    assert "new job on Monday" in text and "sister" not in text  # only the new turns
    assert "reviewed before" in text
    assert "Has a sister, Ines" in system  # ... against what is saved by now
    assert contents(store, user) == {"Has a sister, Ines"}
    assert thread_state(pool, thread_id)[0] == 4


@BOTH
def test_a_bad_tool_call_touches_nothing(fake, pool, store, threads, usage, kind):
    user, victim = unique_user("mallory"), unique_user("victim")
    mine = store.upsert(user, "Likes tea").memory
    theirs = store.upsert(victim, "Victim's PIN hint: birthday").memory
    conversation(threads, user, ("Forget everything about everyone.", "I can't do that."))
    calls = [
        ToolUse("upsert_memory", '{"content": "broken", '),  # malformed JSON
        ToolUse("upsert_memory", {"content": 5, "context": "x"}),  # wrong type
        ToolUse("upsert_memory", {"context": "no content"}),  # missing field
        ToolUse("upsert_memory", {"content": "x", "context": "y", "user_id": victim}),  # extra
        ToolUse("delete_memory", {"memory_id": str(uuid.uuid4())}),  # unknown id
        ToolUse("delete_memory", {"memory_id": "not-a-uuid"}),
        ToolUse("delete_memory", {"memory_id": theirs.id}),  # another user's memory
        ToolUse("upsert_memory", {"content": "hijacked", "context": "", "memory_id": theirs.id}),
        ToolUse("search_memory", {"query": "PIN", "limit": 500}),
        ToolUse("drop_all_memories", {}),
    ]
    fake.script(kind, Reply(text="", tool_calls=calls), Reply(text="Sorry."))
    report = reflector(pool, store, make_router(fake, (kind,)), usage).run()

    (outcome,) = report.threads
    assert outcome.refused == len(calls) and not outcome.changes
    results = fake.requests_for(kind)[-1].tool_results()
    assert len(results) == len(calls) and not any(r["ok"] for r in results)
    assert store.get(victim, theirs.id) == theirs
    assert [e.op for e in store.history(victim, theirs.id)] == ["ADD"]
    assert store.get(user, mine.id) == mine and store.count(user) == 1
    assert outcome.status == "reflected"  # the model answered: not reviewed again


def test_only_the_threads_owner_is_touched(fake, pool, store, threads, usage):
    alice, bob = unique_user("alice"), unique_user("bob")
    alice_memory = store.upsert(alice, "Alice plays the cello").memory
    bob_memory = store.upsert(bob, "Bob is allergic to peanuts").memory
    conversation(threads, alice, ("I sold my cello and bought a piano.", "Enjoy it!"))
    conversation(threads, bob, ("Turns out I'm not allergic to peanuts after all.", "Great!"))
    fake.script(
        "anthropic",
        Reply(  # alice's thread (older, so first)
            text="",
            tool_calls=[
                ToolUse(
                    "upsert_memory",
                    {
                        "content": "Alice plays the piano",
                        "context": "sold her cello",
                        "memory_id": alice_memory.id,
                    },
                )
            ],
        ),
        Reply(text="ok"),
        Reply(  # bob's thread
            text="",
            tool_calls=[ToolUse("delete_memory", {"memory_id": bob_memory.id})],
        ),
        Reply(text="ok"),
    )
    report = reflector(pool, store, make_router(fake), usage).run()
    assert [t.user_id for t in report.threads] == [alice, bob]

    alice_request, _, bob_request, _ = fake.requests_for("anthropic")
    alice_system, alice_text = prompt_of(alice_request)
    bob_system, bob_text = prompt_of(bob_request)
    assert "cello" in alice_system and "peanuts" not in alice_system + alice_text
    assert "peanuts" in bob_system and "cello" not in bob_system + bob_text

    assert contents(store, alice) == {"Alice plays the piano"}
    assert contents(store, bob) == set()
    with pool.transaction() as tx:
        events = tx.execute(
            "SELECT user_id, op FROM memory_events WHERE actor = 'reflection' "
            "AND user_id = ANY(%s::text[]) ORDER BY id",
            [[alice, bob]],
        )
    assert events == [(alice, "UPDATE"), (bob, "DELETE")]


# ---- when and how much ------------------------------------------------------------------------


def test_only_idle_threads_and_at_most_threads_per_run(fake, pool, store, threads, usage):
    user = unique_user()
    ids = [conversation(threads, user, (f"fact number {i}", "ok")) for i in range(3)]
    router = make_router(fake)
    fake.script("anthropic", *[Reply(text="nothing to change")] * 3)

    not_yet = reflector(pool, store, router, usage, later=timedelta(minutes=5)).run()
    assert not not_yet.threads and not fake.requests  # idle 5 of 30 minutes: left alone

    first = reflector(pool, store, router, usage, threads_per_run=2).run()
    assert [t.thread_id for t in first.threads] == ids[:2]  # longest idle first
    second = reflector(pool, store, router, usage, threads_per_run=2).run()
    assert [t.thread_id for t in second.threads] == ids[2:]

    fake.script("anthropic", Reply(text="never asked"))
    conversation(threads, user, ("one more", "ok"))
    out_of_time = reflector(pool, store, router, usage, time_budget_seconds=1e-9).run()
    assert out_of_time.stopped_by_budget and not out_of_time.threads
    assert len(fake.requests) == 3


def test_a_failed_review_is_retried_later_and_nothing_is_marked(fake, pool, store, threads):
    user = unique_user()
    thread_id = conversation(threads, user, ("I live in Oslo.", "Nice city."))
    fake.fail_always("anthropic", Failure(503, "down"))
    failed = reflector(pool, store, make_router(fake)).run()
    assert failed.threads[0].status == "failed"
    reflected_seq, count, failures, not_before = thread_state(pool, thread_id)
    assert (reflected_seq, count, failures) == (0, 2, 1) and not_before is not None
    assert store.count(user) == 0  # the offline fallback's answer changed nothing

    fake.fail_always("anthropic", None)
    # Backing off: the same sweep time does not retry; 15 minutes later it does.
    assert not reflector(pool, store, make_router(fake)).run().threads
    assert len(fake.requests) == 1
    fake.script(
        "anthropic",
        Reply(
            text="",
            tool_calls=[ToolUse("upsert_memory", {"content": "Lives in Oslo", "context": ""})],
        ),
        Reply(text="done"),
    )
    retried = reflector(pool, store, make_router(fake), later=LATER + timedelta(minutes=16)).run()
    assert retried.threads[0].status == "reflected"
    assert contents(store, user) == {"Lives in Oslo"}
    assert thread_state(pool, thread_id)[:3] == (2, 2, 0)


def test_without_a_language_model_nothing_is_reviewed(pool, store, threads):
    user = unique_user()
    thread_id = conversation(threads, user, ("I live in Rome.", "Ciao!"))
    report = reflector(pool, store, Router([], fallback=OfflineProvider())).run()
    assert report.disabled == "no language model is configured" and not report.threads
    assert thread_state(pool, thread_id)[0] == 0


# ---- through the function, as the platform calls it ---------------------------------------------


class Targets:
    runtime: Runtime | None = None

    def get_runtime(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime


TARGETS = Targets()
SOURCE = textwrap.dedent(
    """
    import functions_framework
    from functions.embed import pubsub_handler
    from tests.test_reflection import TARGETS

    embed_memories = functions_framework.cloud_event(pubsub_handler(TARGETS.get_runtime))
    """
)


def scheduler_sweep_event() -> tuple[dict, bytes]:
    """What Cloud Scheduler's push to embed_memories becomes (terraform/scheduler.tf)."""
    message = {
        "messageId": "sweep",
        "data": base64.b64encode(json.dumps({"sweep": True}).encode()).decode(),
        "attributes": {"kind": "sweep"},
    }
    body = {"message": message, "subscription": "projects/p/subscriptions/x-scheduler-sweep"}
    headers = {
        "ce-id": "sweep",
        "ce-specversion": "1.0",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/memory-written",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "Content-Type": "application/json",
    }
    return headers, json.dumps(body).encode()


def test_the_scheduler_sweep_reflects_and_embeds_what_it_wrote(
    fake, pool, embedder, database_url, threads, usage, tmp_path, monkeypatch
):
    settings = Settings(database_url=database_url, embed_in_process=False, db_pool_size=8)
    store = MemoryStore(pool, embedder)
    router = make_router(fake, ("openai",))
    runtime = Runtime(
        settings=settings,
        pool=pool,
        user_pool=pool,
        embedder=embedder,
        memories=store,
        threads=threads,
        redis=None,
        archive=LocalArchive(tmp_path / "archive"),
        agent=Agent(store, threads, router, usage),
        usage=usage,
    )
    TARGETS.runtime = runtime
    user = unique_user()
    thread_id = conversation(threads, user, ("I run marathons.", "Impressive!"))
    with pool.transaction() as tx:  # the sweep's own clock is real: make the thread idle
        tx.execute(
            "UPDATE threads SET updated_at = now() - interval '2 hours' WHERE thread_id = %s",
            [thread_id],
        )
    fake.script(
        "openai",
        Reply(
            text="",
            tool_calls=[ToolUse("upsert_memory", {"content": "Runs marathons", "context": ""})],
        ),
        Reply(text="done"),
    )
    source = tmp_path / "targets.py"
    source.write_text(SOURCE)
    headers, body = scheduler_sweep_event()
    app = functions_framework.create_app("embed_memories", str(source))
    response = app.test_client().post("/", headers=headers, data=body)
    assert response.status_code == 200

    (memory,) = store.list(user).items
    assert memory.content == "Runs marathons" and memory.embedded  # embedded in the same sweep
    assert thread_state(pool, thread_id)[0] == 2
