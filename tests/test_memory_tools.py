"""The memory tools are one implementation for chat and reflection: the same arguments give
the same clear refusal (checked by jsonschema against each tool's declared schema) and the
same search results in both, through the real SDKs against the wire-level LLM fake, real
PostgreSQL and the real local embedder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.agent import Agent, AgentConfig
from services.embedding_worker import drain
from services.llm import AnthropicProvider, OfflineProvider, OpenAIProvider, RetryPolicy, Router
from services.memories.records import NewMemory
from services.memory_tools import MAX_SEARCH_RESULTS, TOOL_SPECS
from services.reflection import ReflectionConfig, Reflector
from services.retrieval import retrieve
from services.threads import ChatMessage, ThreadStore
from tests.fakes.llm_server import Reply, ToolUse
from tests.processes import unique_user

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BOTH = pytest.mark.parametrize("kind", ["anthropic", "openai"])

BAD_CALLS = [
    ToolUse("upsert_memory", {"content": 5, "context": "x"}),  # wrong type
    ToolUse("upsert_memory", {"context": "no content"}),  # missing required
    ToolUse("upsert_memory", {"content": "x", "context": "y", "user_id": "victim"}),  # extra
    ToolUse("search_memory", {"query": "tea", "limit": MAX_SEARCH_RESULTS + 1}),  # too many
    ToolUse("search_memory", {"query": "tea", "limit": True}),  # a boolean is no integer
    ToolUse("delete_memory", {}),
]
# What each refusal must name, in the order above.
NAMED = [
    "content: 5 is not of type 'string'",
    "missing required argument: content",
    "unknown argument(s): user_id",
    f"limit: {MAX_SEARCH_RESULTS + 1} is greater than the maximum of {MAX_SEARCH_RESULTS}",
    "limit: True is not of type 'integer'",
    "missing required argument: memory_id",
]


@pytest.fixture(scope="module")
def threads(pool):
    return ThreadStore(pool)


def router(fake, kind: str) -> Router:
    made = {
        "anthropic": lambda: AnthropicProvider(
            "test-key", base_url=fake.anthropic_base_url, timeout=5
        ),
        "openai": lambda: OpenAIProvider("test-key", base_url=fake.openai_base_url, timeout=5),
    }
    return Router(
        [made[kind]()],
        retry=RetryPolicy(max_retries=0),
        sleep=lambda s: None,
        fallback=OfflineProvider(),
    )


def nothing_pending(pool) -> None:
    """Only the thread a test writes next is work for reflection (the database is shared)."""
    with pool.transaction() as tx:
        tx.execute(
            "UPDATE threads SET reflected_seq = message_count, reflection_failures = 0, "
            "reflection_not_before = NULL"
        )


def chat_results(fake, kind, store, threads, user, calls) -> list[dict]:
    """The tool results the model got for ``calls`` in one chat turn."""
    fake.script(kind, Reply(text="", tool_calls=calls), Reply(text="ok"))
    agent = Agent(store, threads, router(fake, kind), config=AgentConfig(episodes=False))
    list(agent.run_turn(user, None, "please use the tools"))
    return fake.requests_for(kind)[-1].tool_results()


def reflection_results(fake, kind, pool, store, threads, user, calls) -> list[dict]:
    """The tool results the model got for ``calls`` in one reflection of a thread of user's."""
    nothing_pending(pool)
    messages = [ChatMessage("user", "I drink green tea."), ChatMessage("assistant", "Nice.")]
    threads.append(user, None, messages, title="tea")
    fake.script(kind, Reply(text="", tool_calls=calls), Reply(text="done"))
    later = datetime.now(UTC) + timedelta(hours=1)
    reflector = Reflector(
        pool,
        store,
        router(fake, kind),
        config=ReflectionConfig(threads_per_run=1),
        clock=lambda: later,
    )
    (outcome,) = reflector.run().threads
    assert outcome.status == "reflected"
    return fake.requests_for(kind)[-1].tool_results()


@BOTH
def test_a_bad_argument_gets_the_same_named_error_in_chat_and_reflection(
    fake, pool, store, threads, kind
):
    user = unique_user()
    in_chat = chat_results(fake, kind, store, threads, user, BAD_CALLS)
    in_reflection = reflection_results(fake, kind, pool, store, threads, user, BAD_CALLS)

    assert in_chat == in_reflection
    assert [r["ok"] for r in in_chat] == [False] * len(BAD_CALLS)
    assert [r["error"] for r in in_chat] == NAMED
    assert store.count(user) == 0  # nothing was written by either


def test_search_gives_the_same_results_in_chat_and_reflection(fake, pool, store, threads, embedder):
    user = unique_user()
    facts = [
        "Drinks genmaicha every morning",
        "Prefers green tea to coffee",
        "Has a cat called Miso",
        "Works as a nurse in Porto",
    ]
    store.add_many(user, [NewMemory(text) for text in facts])
    drain(pool, embedder, batch_size=16, duplicate_threshold=1.01)
    search = [ToolUse("search_memory", {"query": "which tea does the user drink", "limit": 2})]

    (in_chat,) = chat_results(fake, "anthropic", store, threads, user, search)
    (in_reflection,) = reflection_results(fake, "anthropic", pool, store, threads, user, search)

    assert in_chat == in_reflection and in_chat["ok"]
    found = [m["memory_id"] for m in in_chat["memories"]]
    ranked = retrieve(store, user, "which tea does the user drink", limit=2).hits
    assert found == [hit.memory.id for hit in ranked] and len(found) == 2
    assert {m["content"] for m in in_chat["memories"]} <= set(facts)
    assert all(m["kind"] == "fact" and m["observed_at"] for m in in_chat["memories"])


def test_the_declared_schemas_refuse_what_the_tools_refuse():
    """The model is shown the schema that checks its calls: closed objects, and the search
    limit's bounds and default."""
    specs = {spec.name: spec.parameters for spec in TOOL_SPECS}
    assert list(specs) == ["upsert_memory", "delete_memory", "search_memory"]
    assert all(schema["additionalProperties"] is False for schema in specs.values())
    limit = specs["search_memory"]["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"]) == (1, MAX_SEARCH_RESULTS)
    assert 1 <= limit["default"] <= MAX_SEARCH_RESULTS
