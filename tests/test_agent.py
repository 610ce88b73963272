"""The agent turn end to end: real SDKs against the wire fake, real PostgreSQL, real
embedder. Covers: memory written by a tool call and found again in a new
thread, incremental streaming, retries/failover/offline, a cut stream, refused tool calls,
usage rows, and a retired model."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from services.agent import (
    Agent,
    AgentConfig,
    MemoryChanged,
    TextChunk,
    ToolUsed,
    TurnError,
    TurnFinished,
    TurnStarted,
)
from services.errors import InvalidInput, NotFound
from services.llm import (
    AnthropicProvider,
    OfflineProvider,
    OpenAIProvider,
    RetryPolicy,
    Router,
)
from services.llm.anthropic_provider import CARD_MODEL, SUCCESSOR_MODEL
from services.llm.pricing import PRICES
from services.threads import ThreadStore
from services.usage import UsageRecorder
from tests.agent_turns import respond
from tests.fakes.llm_server import Failure, FakeLLMServer, Reply, ToolUse
from tests.processes import unique_user

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
BOTH = pytest.mark.parametrize("kind", ["anthropic", "openai"])


@pytest.fixture(scope="module")
def threads(pool):
    return ThreadStore(pool)


@pytest.fixture(scope="module")
def usage(pool):
    return UsageRecorder(pool)


class Sleeps(list):
    """The router's injected sleep: records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def providers(fake: FakeLLMServer, order=("anthropic", "openai"), timeout: float = 5.0):
    made = {
        "anthropic": lambda: AnthropicProvider(
            "test-key", base_url=fake.anthropic_base_url, timeout=timeout
        ),
        "openai": lambda: OpenAIProvider(
            "test-key", base_url=fake.openai_base_url, timeout=timeout
        ),
    }
    return [made[name]() for name in order]


def make_agent(store, threads, usage, router, **config) -> Agent:
    return Agent(
        store,
        threads,
        router,
        usage,
        config=AgentConfig(**config),
        clock=lambda: NOW,
    )


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def build(store, threads, usage, fake, sleeps):
    """build(order) -> an agent over fresh providers/router in that order."""

    def make(order=("anthropic", "openai"), timeout=5.0, **config):
        router = Router(
            providers(fake, order, timeout),
            retry=RetryPolicy(max_retries=2, base_delay=0.01),
            sleep=sleeps,
            fallback=OfflineProvider(),
        )
        return make_agent(store, threads, usage, router, **config)

    return make


def system_text(request) -> str:
    body = request.body
    if request.provider == "anthropic":
        return "\n".join(block["text"] for block in body.get("system", []))
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


def tool_results(request) -> list[dict]:
    """Tool results the SDK sent back, as {"id", "content", "is_error"} in either format."""
    out = []
    for message in request.body["messages"]:
        if request.provider == "openai":
            if message["role"] == "tool":
                content = json.loads(message["content"])
                error = not content["ok"]
                out.append({"id": message["tool_call_id"], "content": content, "is_error": error})
        elif isinstance(message["content"], list):
            for block in message["content"]:
                if block["type"] == "tool_result":
                    out.append(
                        {
                            "id": block["tool_use_id"],
                            "content": json.loads(block["content"]),
                            "is_error": block.get("is_error", False),
                        }
                    )
    return out


def events_of(events, cls):
    return [e for e in events if isinstance(e, cls)]


# ---- a full turn ---------------------------------------------------------------------------


@BOTH
def test_memory_written_by_a_tool_is_retrieved_in_a_new_thread(fake, build, store, kind):
    user, other = unique_user("alice"), unique_user("bob")
    agent = build(order=(kind,))
    fake.script(
        kind,
        Reply(
            text="Nice! ",
            tool_calls=[
                ToolUse(
                    "upsert_memory",
                    {"content": "Alice's favourite tea is genmaicha", "context": "said at lunch"},
                )
            ],
        ),
        Reply(text="I'll remember that you love genmaicha."),
    )
    events = list(agent.run_turn(user, None, "My favourite tea is genmaicha."))

    assert isinstance(events[0], TurnStarted) and events[0].new_thread
    assert isinstance(events[-1], TurnFinished)
    (change,) = events_of(events, MemoryChanged)
    assert change.action == "written" and "genmaicha" in change.content
    stored = store.get(user, change.memory_id)
    assert stored.user_id == user and stored.context == "said at lunch"
    assert stored.observed_at == NOW  # the turn's time, not the insert time
    with pytest.raises(NotFound):
        store.get(other, change.memory_id)

    final = events[-1]
    assert final.text == "Nice! I'll remember that you love genmaicha."
    assert final.provider == kind and final.steps == 2 and not final.offline
    first, second = fake.requests_for(kind)
    (result,) = tool_results(second)
    assert result["content"] == {"ok": True, "memory_id": stored.id, "op": "add"}

    # a later turn in a new thread finds it, and it is in the system prompt sent
    fake.script(kind, Reply(text="You like genmaicha."))
    later = list(agent.run_turn(user, None, "Which tea do I like?"))
    assert later[-1].thread_id != final.thread_id
    assert stored.id in later[0].memory_ids
    sent = system_text(fake.requests_for(kind)[-1])
    assert "genmaicha" in sent and stored.id in sent and "2026-11-25 09:30 UTC" in sent

    # another user's turn does not see it
    fake.script(kind, Reply(text="I don't know."))
    list(agent.run_turn(other, None, "Which tea do I like?"))
    assert "genmaicha" not in system_text(fake.requests_for(kind)[-1])


def test_thread_history_is_sent_back_with_the_tool_exchange(fake, build, threads):
    user = unique_user()
    agent = build()
    fake.script(
        "anthropic",
        Reply(tool_calls=[ToolUse("search_memory", {"query": "coffee"})], text=""),
        Reply(text="Nothing saved about coffee."),
        Reply(text="Sure."),
    )
    first = respond(agent, user, None, "Do you know my coffee order?")
    thread_id = first.final.thread_id
    respond(agent, user, thread_id, "Thanks!")
    messages = fake.requests_for("anthropic")[-1].body["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    kinds = [block["type"] for m in messages for block in m["content"]]
    assert kinds == ["text", "tool_use", "tool_result", "text", "text"]
    stored = threads.load(user, thread_id)
    roles = [m.role for m in stored]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert stored[1].tool_calls[0]["name"] == "search_memory"


# ---- streaming -----------------------------------------------------------------------------


@BOTH
def test_text_arrives_incrementally(fake, build, kind):
    agent = build(order=(kind,))
    fake.script(kind, Reply(text="one two three four five six", chunk_delay_s=0.03))
    arrivals = []
    for event in agent.run_turn(unique_user(), None, "count to six"):
        arrivals.append((time.monotonic(), event))
    chunks = [(t, e) for t, e in arrivals if isinstance(e, TextChunk)]
    assert len(chunks) >= 6
    end = arrivals[-1][0]
    assert end - chunks[0][0] > 0.1  # the first chunk came well before the end
    assert "".join(e.text for _, e in chunks) == "one two three four five six"
    final = arrivals[-1][1]
    assert final.latency.first_token_ms is not None
    assert final.latency.first_token_ms < final.latency.total_ms


# ---- retries, failover, offline -------------------------------------------------------------


def test_rate_limited_then_success_is_retried(fake, build, sleeps):
    agent = build()
    fake.script("anthropic", Failure.rate_limited(retry_after=0.02), Reply(text="ok"))
    final = respond(agent, unique_user(), None, "hi").final
    assert final.text == "ok" and final.provider == "anthropic"
    assert sleeps == [0.02]  # retry-after honoured
    assert len(fake.requests_for("anthropic")) == 2 and not fake.requests_for("openai")


def test_provider_down_fails_over_to_the_next(fake, build, sleeps):
    agent = build()
    fake.fail_always("anthropic", Failure(503, "down"))
    fake.script("openai", Reply(text="from openai"))
    result = respond(agent, unique_user(), None, "hi")
    assert result.text == "from openai" and result.final.provider == "openai"
    assert not result.errors
    assert len(fake.requests_for("anthropic")) == 3 and len(sleeps) == 2  # 1 try + 2 retries


def test_both_down_gives_the_offline_answer_from_memories(fake, build, store):
    user = unique_user()
    store.upsert(user, "Lives in Lisbon since 2019", context="moved for work")
    agent = build()
    fake.fail_always("anthropic", Failure(500, "boom"))
    fake.fail_always("openai", Failure(503, "down"))
    result = respond(agent, user, None, "Where do I live, Lisbon or Porto?")
    assert result.final.offline and result.final.provider == "offline"
    assert result.text.startswith("No language model is available right now")
    assert "Lives in Lisbon since 2019" in result.text
    assert result.final.cost_usd == 0 and not result.errors


@pytest.mark.timeout(30)
def test_a_hung_provider_gets_the_offline_answer_within_the_turn_deadline(
    fake, store, threads, usage, embedder
):
    """60 s timeouts and two retries per provider would keep the user waiting minutes; the
    turn's 2 s deadline cuts every attempt's timeout to the time left."""
    embedder.embed_query("warm up")  # loading the model is no part of the figure
    hung = Failure(503, "hung", delay_s=30)
    fake.fail_always("anthropic", hung)
    fake.fail_always("openai", hung)
    router = Router(
        providers(fake, timeout=60.0),
        retry=RetryPolicy(max_retries=2, base_delay=0.01),
        fallback=OfflineProvider(),
    )  # the real clock and sleep
    agent = make_agent(store, threads, usage, router, turn_deadline_seconds=2.0)
    started = time.monotonic()
    result = respond(agent, unique_user(), None, "What do I like to drink?")
    elapsed = time.monotonic() - started
    assert result.final.offline
    assert result.text.startswith("The language model did not answer in time")
    assert 1.5 < elapsed < 3.5  # it waited for the model, and no longer than the deadline
    assert fake.requests_for("anthropic")  # the hung provider was tried


def test_no_provider_configured_says_so(store, threads, usage):
    agent = make_agent(store, threads, usage, Router([], fallback=OfflineProvider()))
    result = respond(agent, unique_user(), None, "hello")
    assert result.final.offline
    assert "No language model is configured" in result.text


@BOTH
@pytest.mark.timeout(20)
def test_stream_cut_after_first_token_ends_with_an_error_and_keeps_the_text(
    fake, build, threads, kind
):
    agent = build(order=(kind,))
    # anthropic: message_start, content_block_start, ping, first delta; openai: role, first
    cut = 4 if kind == "anthropic" else 2
    fake.script(kind, Reply(text="one two three four", cut_after_events=cut))
    user = unique_user()
    events = list(agent.run_turn(user, None, "count"))
    assert [type(e) for e in events] == [TurnStarted, TextChunk, TurnError, TurnFinished]
    assert events[1].text == "one "
    assert events[2].code == "llm_stream_interrupted"
    final = events[-1]
    assert final.finish_reason == "error" and final.error
    assert len(fake.requests_for(kind)) == 1  # not retried after output started
    stored = threads.load(user, final.thread_id)
    assert [(m.role, m.content) for m in stored] == [("user", "count"), ("assistant", "one ")]


def test_client_going_away_mid_answer_keeps_what_was_said(fake, build, threads):
    agent = build()
    fake.script("anthropic", Reply(text="alpha beta gamma delta", chunk_delay_s=0.01))
    user = unique_user()
    stream = agent.run_turn(user, None, "say words")
    started = next(stream)
    assert isinstance(next(stream), TextChunk)
    stream.close()
    stored = threads.load(user, started.thread_id)
    assert [(m.role, m.content) for m in stored] == [("user", "say words"), ("assistant", "alpha ")]


# ---- tool-call validation --------------------------------------------------------------------


@BOTH
def test_bad_tool_calls_are_refused_without_touching_data(fake, build, store, kind):
    user, victim = unique_user("mallory"), unique_user("victim")
    theirs = store.upsert(victim, "Victim's bank PIN hint: birthday").memory
    calls = [
        ToolUse("upsert_memory", '{"content": "broken", '),  # malformed JSON
        ToolUse("upsert_memory", {"content": 5, "context": "x"}),  # wrong type
        ToolUse("upsert_memory", {"context": "no content"}),  # missing field
        ToolUse("upsert_memory", {"content": "x", "context": "y", "user_id": victim}),  # extra
        ToolUse("delete_memory", {"memory_id": str(uuid.uuid4())}),  # unknown id
        ToolUse("delete_memory", {"memory_id": "not-a-uuid"}),
        ToolUse("delete_memory", {"memory_id": theirs.id}),  # another user's memory
        ToolUse("upsert_memory", {"content": "hijacked", "context": "", "memory_id": theirs.id}),
        ToolUse("search_memory", {"query": "  "}),
        ToolUse("drop_all_memories", {}),
    ]
    fake.script(kind, Reply(text="", tool_calls=calls), Reply(text="Sorry, that failed."))
    result = respond(build(order=(kind,)), user, None, "do bad things")

    assert result.text == "Sorry, that failed." and not result.errors
    assert len(result.tools) == len(calls) and not any(t.ok for t in result.tools)
    assert not result.memory_changes
    results = tool_results(fake.requests_for(kind)[-1])
    assert len(results) == len(calls) and all(r["is_error"] for r in results)
    assert all(r["content"]["ok"] is False and r["content"]["error"] for r in results)
    assert "not valid JSON" in results[0]["content"]["error"]
    assert "unknown tool" in results[-1]["content"]["error"]
    # nothing changed anywhere
    assert store.get(victim, theirs.id) == theirs
    assert [e.op for e in store.history(victim, theirs.id)] == ["ADD"]
    assert store.count(user, kind="fact") == 0


# ---- usage and cost -----------------------------------------------------------------------


@BOTH
def test_usage_rows_match_the_tokens_the_provider_reported(fake, build, usage, kind):
    agent = build(order=(kind,))
    fake.script(
        kind,
        Reply(
            text="",
            tool_calls=[ToolUse("upsert_memory", {"content": "Has a cat", "context": "chat"})],
            input_tokens=1200,
            output_tokens=30,
            cache_read_tokens=500,
            cache_write_tokens=0 if kind == "openai" else 100,
        ),
        Reply(text="Got it.", input_tokens=1300, output_tokens=45, cache_read_tokens=600),
    )
    user, request_id = unique_user(), f"req-{uuid.uuid4().hex[:8]}"
    final = respond(agent, user, None, "I have a cat", request_id=request_id).final

    rows = usage.for_request(user, request_id)
    assert [r.kind for r in rows] == ["chat", "chat"]
    first, second = rows
    assert (first.usage.input_tokens, first.usage.output_tokens) == (1200, 30)
    assert first.usage.cache_read_tokens == 500
    assert first.usage.cache_write_tokens == (0 if kind == "openai" else 100)
    assert (second.usage.input_tokens, second.usage.output_tokens) == (1300, 45)
    assert all(r.provider == kind and r.thread_id == final.thread_id for r in rows)
    price = PRICES[first.model]
    expected = (
        (1200 + 1300) * price.input
        + (30 + 45) * price.output
        + (500 + 600) * price.cache_read
        + first.usage.cache_write_tokens * price.cache_write
    ) / 1e6
    assert sum(r.cost_usd for r in rows) == pytest.approx(expected, abs=1e-7)
    assert final.cost_usd == pytest.approx(expected, abs=1e-7)
    assert final.usage.input_tokens == 2500 and final.usage.output_tokens == 75
    assert all(r.price_known for r in rows)


# ---- model lifecycle --------------------------------------------------------------------------


def test_retired_model_moves_to_the_next_and_later_turns_go_straight_there(fake, build):
    agent = build(order=("anthropic",))
    fake.retire_model(CARD_MODEL)
    first = respond(agent, unique_user(), None, "hello")
    assert not first.errors and first.final.model == SUCCESSOR_MODEL
    assert [r.model for r in fake.requests_for("anthropic")] == [CARD_MODEL, SUCCESSOR_MODEL]

    second = respond(agent, unique_user(), None, "hello again")
    assert second.final.model == SUCCESSOR_MODEL
    assert [r.model for r in fake.requests_for("anthropic")][2:] == [SUCCESSOR_MODEL]


# ---- bounds and input --------------------------------------------------------------------------


def test_tool_loop_is_bounded(fake, build):
    agent = build(max_steps=3)
    looping = Reply(text="", tool_calls=[ToolUse("search_memory", {"query": "x"})])
    fake.script("anthropic", looping, looping, looping, looping)
    final = respond(agent, unique_user(), None, "loop").final
    assert final.finish_reason == "max_steps" and final.steps == 3
    assert len(fake.requests_for("anthropic")) == 3


def test_bad_input_and_foreign_threads_raise_before_streaming(fake, build):
    agent = build()
    owner = unique_user()
    thread_id = respond(agent, owner, None, "hi").final.thread_id
    with pytest.raises(NotFound):
        agent.run_turn(unique_user(), thread_id, "let me in")
    with pytest.raises(InvalidInput):
        agent.run_turn(owner, None, "   ")
    with pytest.raises(InvalidInput):
        agent.run_turn(owner, "../etc", "hi")
    assert len(fake.requests_for("anthropic")) == 1


def test_events_serialise_to_json(fake, build):
    fake.script(
        "anthropic",
        Reply(text="ok", tool_calls=[ToolUse("upsert_memory", {"content": "a", "context": "b"})]),
        Reply(text="done"),
    )
    events = list(build().run_turn(unique_user(), None, "save a"))
    payloads = [json.loads(json.dumps(e.to_dict())) for e in events]
    assert [p["type"] for p in payloads] == [
        "started",
        "text",
        "tool",
        "memory",
        "text",
        "final",
    ]
    final = payloads[-1]
    assert set(final["latency"]) >= {"retrieval_ms", "prompt_build_ms", "persistence_ms"}
    assert final["usage"]["input_tokens"] > 0
    assert events_of(events, ToolUsed)[0].ok


def test_stable_instructions_are_cached_and_the_turn_context_is_not(fake, build):
    respond(build(), unique_user(), None, "hello")
    body = fake.requests_for("anthropic")[-1].body
    instructions, context = body["system"]
    assert instructions["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in context
    assert "Current time: 2026-11-25 09:30 UTC" in context["text"]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in body["tools"]] == ["upsert_memory", "delete_memory", "search_memory"]


class PaidNameEmbedder:
    """The local model under a paid model's name, so the query embedding is metered."""

    provider, model = "openai", "text-embedding-3-small"

    def __init__(self, inner) -> None:
        self.inner, self.dim = inner, inner.dim

    def embed_query(self, text):
        return self.inner.embed_query(text)

    def embed_documents(self, texts):
        return self.inner.embed_documents(texts)


def test_paid_query_embeddings_get_a_usage_row(fake, pool, embedder, threads, usage):
    from services.memories.store import MemoryStore

    store = MemoryStore(pool, PaidNameEmbedder(embedder))
    router = Router(providers(fake, ("openai",)), fallback=OfflineProvider())
    agent = make_agent(store, threads, usage, router)
    user = unique_user()
    respond(agent, user, None, "twelve characters.", request_id="emb-1")
    kinds = {r.kind: r for r in usage.for_request(user, "emb-1")}
    assert set(kinds) == {"chat", "embedding"}
    assert kinds["embedding"].model == "text-embedding-3-small"
    assert kinds["embedding"].usage.input_tokens > 0 and kinds["embedding"].cost_usd > 0
