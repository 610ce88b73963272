"""The Anthropic and OpenAI providers, driven through the real SDKs against the fake."""

from __future__ import annotations

import json
from datetime import date

import pytest

from services.llm import (
    AnthropicProvider,
    AuthenticationFailedError,
    ChatRequest,
    Done,
    Message,
    ModelNotFoundError,
    OpenAIProvider,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryableProviderError,
    StreamInterruptedError,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
    collect,
    deprecation_warnings,
    newest_active_model,
)
from services.llm.anthropic_provider import (
    CARD_MODEL,
    DEFAULT_ANTHROPIC_MODELS,
    SUCCESSOR_MODEL,
    parse_sdk_date,
    sdk_deprecations,
)
from tests.fakes.llm_server import Failure, FakeLLMServer, Reply, ToolUse

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOOLS = (
    ToolSpec(
        "upsert_memory",
        "Create or update a memory.",
        {
            "type": "object",
            "properties": {
                "content": {"type": "string"},
                "context": {"type": "string"},
                "memory_id": {"type": "string"},
            },
            "required": ["content", "context"],
        },
    ),
    ToolSpec(
        "search_memory",
        "Search memories.",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    ),
)


def request(text: str = "hello", **kw) -> ChatRequest:
    return ChatRequest(
        system="You are helpful. Memories: none.",
        messages=[Message("user", text)],
        tools=TOOLS,
        **kw,
    )


def make(kind: str, fake: FakeLLMServer, **kw):
    kw.setdefault("timeout", 5.0)
    if kind == "anthropic":
        return AnthropicProvider("test-key", base_url=fake.anthropic_base_url, **kw)
    return OpenAIProvider("test-key", base_url=fake.openai_base_url, **kw)


BOTH = pytest.mark.parametrize("kind", ["anthropic", "openai"])


@BOTH
def test_text_streams_incrementally(fake, kind):
    fake.script(kind, Reply(text="The quick brown fox jumps."))
    events = list(make(kind, fake).stream(request()))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert isinstance(events[-1], Done)
    assert events.index(deltas[-1]) < len(events) - 1
    assert "".join(d.text for d in deltas) == "The quick brown fox jumps."
    assert events[-1].stop_reason == "end_turn"
    assert events[-1].provider == kind


@BOTH
def test_text_arrives_before_the_stream_ends(fake, kind):
    # the first delta is handed over while the server is still pacing the rest
    import time

    fake.script(kind, Reply(text="a b c d", chunk_delay_s=0.1))
    started = time.monotonic()
    stream = make(kind, fake).stream(request())
    first = next(e for e in stream if isinstance(e, TextDelta))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.text
    assert isinstance(rest[-1], Done)
    assert total - first_at >= 0.2


@BOTH
def test_tool_calls_are_parsed(fake, kind):
    fake.script(
        kind,
        Reply(
            text="Noted.",
            tool_calls=[
                ToolUse("upsert_memory", {"content": "likes tea", "context": "drinks"}, id="t1"),
                ToolUse("search_memory", {"query": "tea"}, id="t2"),
            ],
        ),
    )
    result = collect(make(kind, fake).stream(request()))
    assert result.text == "Noted."
    assert [(c.id, c.name, dict(c.arguments)) for c in result.tool_calls] == [
        ("t1", "upsert_memory", {"content": "likes tea", "context": "drinks"}),
        ("t2", "search_memory", {"query": "tea"}),
    ]
    assert all(c.arguments_error is None for c in result.tool_calls)
    assert result.done.stop_reason == "tool_use"


@BOTH
def test_malformed_tool_arguments_are_reported_not_raised(fake, kind):
    fake.script(
        kind, Reply(text="", tool_calls=[ToolUse("upsert_memory", '{"content": "x", ', id="bad")])
    )
    (call,) = collect(make(kind, fake).stream(request())).tool_calls
    assert call.name == "upsert_memory" and call.arguments == {}
    assert call.raw_arguments == '{"content": "x", '
    assert "not valid JSON" in call.arguments_error


def test_anthropic_usage_includes_cache_tokens(fake):
    fake.script(
        "anthropic",
        Reply(
            text="ok then",
            input_tokens=120,
            output_tokens=33,
            cache_read_tokens=900,
            cache_write_tokens=250,
        ),
    )
    done = collect(make("anthropic", fake).stream(request())).done
    assert done.usage == Usage(
        input_tokens=120, output_tokens=33, cache_read_tokens=900, cache_write_tokens=250
    )
    assert done.model == CARD_MODEL


def test_openai_usage_separates_cached_prompt_tokens(fake):
    fake.script(
        "openai", Reply(text="ok then", input_tokens=120, output_tokens=33, cache_read_tokens=900)
    )
    done = collect(make("openai", fake).stream(request())).done
    # the fake reports prompt_tokens=1020 with cached_tokens=900
    assert done.usage == Usage(
        input_tokens=120, output_tokens=33, cache_read_tokens=900, cache_write_tokens=0
    )
    body = fake.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_anthropic_sends_cache_control_on_system_and_last_tool(fake):
    collect(make("anthropic", fake).stream(request()))
    body = fake.requests[-1].body
    assert body["system"] == [
        {
            "type": "text",
            "text": "You are helpful. Memories: none.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert [t["name"] for t in body["tools"]] == ["upsert_memory", "search_memory"]
    assert "cache_control" not in body["tools"][0]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][0]["input_schema"]["required"] == ["content", "context"]
    assert body["stream"] is True and body["model"] == CARD_MODEL


def test_anthropic_prompt_caching_can_be_switched_off(fake):
    collect(make("anthropic", fake, prompt_caching=False).stream(request()))
    assert "cache_control" not in json.dumps(fake.requests[-1].body)


def tool_loop_messages() -> list[Message]:
    call = ToolCall("call_9", "search_memory", {"query": "tea"})
    return [
        Message("user", "what do I drink?"),
        Message("assistant", "Let me look.", tool_calls=(call,)),
        Message("tool", '{"results": []}', tool_call_id="call_9"),
        Message("tool", "bad id", tool_call_id="call_10", is_error=True),
    ]


def test_anthropic_maps_tool_loop_messages(fake):
    collect(
        make("anthropic", fake).stream(
            ChatRequest(system="s", messages=tool_loop_messages(), tools=TOOLS)
        )
    )
    msgs = fake.requests[-1].body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_9", "name": "search_memory", "input": {"query": "tea"}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_9", "content": '{"results": []}'},
        {"type": "tool_result", "tool_use_id": "call_10", "content": "bad id", "is_error": True},
    ]


def test_openai_maps_tool_loop_messages(fake):
    collect(
        make("openai", fake).stream(
            ChatRequest(system="s", messages=tool_loop_messages(), tools=TOOLS)
        )
    )
    body = fake.requests[-1].body
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool"]
    assert msgs[2]["tool_calls"] == [
        {
            "id": "call_9",
            "type": "function",
            "function": {"name": "search_memory", "arguments": '{"query": "tea"}'},
        }
    ]
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_9", "content": '{"results": []}'}
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "upsert_memory",
            "description": "Create or update a memory.",
            "parameters": TOOLS[0].parameters,
        },
    }


def test_openai_token_limit_parameter_depends_on_the_server(fake):
    collect(make("openai", fake).stream(request(max_tokens=77)))
    assert fake.requests[-1].body["max_tokens"] == 77  # an OpenAI-compatible base URL
    collect(
        make("openai", fake, max_tokens_param="max_completion_tokens").stream(
            request(max_tokens=78)
        )
    )
    assert fake.requests[-1].body["max_completion_tokens"] == 78
    assert OpenAIProvider("k").max_tokens_param == "max_completion_tokens"


@BOTH
def test_not_found_model_moves_to_the_next_and_is_remembered(fake, kind):
    models = ["model-old", "model-new"]
    fake.retire_model("model-old")
    provider = make(kind, fake, models=models)
    first = collect(provider.stream(request()))
    second = collect(provider.stream(request()))
    assert first.done.model == "model-new" and second.done.model == "model-new"
    assert [r.model for r in fake.requests] == ["model-old", "model-new", "model-new"]
    assert provider.models.retired == {"model-old"}


@BOTH
def test_every_model_not_found_raises_model_not_found(fake, kind):
    fake.retire_model("a")
    fake.retire_model("b")
    with pytest.raises(ModelNotFoundError):
        list(make(kind, fake, models=["a", "b"]).stream(request()))
    assert [r.model for r in fake.requests] == ["a", "b"]


@BOTH
def test_errors_are_classified(fake, kind):
    provider = make(kind, fake)
    fake.script(kind, Failure.rate_limited(retry_after=7))
    with pytest.raises(RateLimitedError) as rate:
        list(provider.stream(request()))
    assert rate.value.retryable and rate.value.retry_after == 7 and rate.value.status == 429

    fake.script(kind, Failure(503, "unavailable"))
    with pytest.raises(ProviderUnavailableError) as down:
        list(provider.stream(request()))
    assert down.value.retryable

    fake.script(kind, Failure.unauthorized())
    with pytest.raises(AuthenticationFailedError) as auth:
        list(provider.stream(request()))
    assert not auth.value.retryable


def test_anthropic_overloaded_is_retryable(fake):
    fake.script("anthropic", Failure.overloaded())
    with pytest.raises(ProviderUnavailableError) as exc:
        list(make("anthropic", fake).stream(request()))
    assert exc.value.status == 529 and exc.value.retryable


@BOTH
def test_slow_first_byte_is_a_timeout(fake, kind):
    fake.script(kind, Reply(delay_s=1.0))
    with pytest.raises(ProviderTimeoutError):
        list(make(kind, fake, timeout=0.2).stream(request()))


@BOTH
@pytest.mark.timeout(10)
def test_cut_stream_raises_after_the_text_so_far(fake, kind):
    fake.script(kind, Reply(text="one two three four five six", cut_after_events=5))
    got = []
    with pytest.raises(RetryableProviderError) as exc:
        for event in make(kind, fake).stream(request()):
            got.append(event)
    assert got and all(isinstance(e, TextDelta) for e in got)
    assert not any(isinstance(e, (Done, ToolCallEvent)) for e in got)
    assert exc.value.provider == kind


def test_stream_ending_without_terminator_is_interrupted(fake):
    # all events but message_stop: the HTTP body ends cleanly, the message does not
    events = 1 + 1 + 1 + 3 + 1 + 1  # start, block start, ping, 3 deltas, block stop, message_delta
    fake.script("anthropic", Reply(text="a b c", cut_after_events=events))
    with pytest.raises(StreamInterruptedError):
        list(make("anthropic", fake).stream(request()))


# -- model lifecycle -----------------------------------------------------------------------


def test_deprecation_warning_names_the_end_of_life_date():
    assert sdk_deprecations()[CARD_MODEL] == "November 30th, 2026"
    (warning,) = deprecation_warnings(list(DEFAULT_ANTHROPIC_MODELS), today=date(2026, 6, 1))
    assert CARD_MODEL in warning and "2026-11-30" in warning and "182 days" in warning
    (past,) = deprecation_warnings([CARD_MODEL], today=date(2026, 12, 1))
    assert "reached end-of-life on 2026-11-30" in past
    assert (
        deprecation_warnings(["claude-sonnet-4-6", SUCCESSOR_MODEL], today=date(2026, 6, 1)) == []
    )


def test_deprecation_table_can_be_injected_and_dates_parsed():
    table = {"m1": "January 2nd, 2027", "m2": "sometime"}
    assert parse_sdk_date("January 22nd, 2027") == date(2027, 1, 22)
    w = deprecation_warnings(["m1", "m2", "m3"], today=date(2026, 1, 1), table=table)
    assert len(w) == 2 and "2027-01-02" in w[0] and "sometime" in w[1]


def test_successor_is_the_newest_active_sonnet_in_the_installed_sdk():
    assert DEFAULT_ANTHROPIC_MODELS == (CARD_MODEL, SUCCESSOR_MODEL)
    assert newest_active_model("sonnet") == SUCCESSOR_MODEL
    assert SUCCESSOR_MODEL not in sdk_deprecations()
    # with the newer ones deprecated, the next newest wins
    table = {**sdk_deprecations(), "claude-sonnet-5-5": "x", "claude-sonnet-5": "x"}
    assert newest_active_model("sonnet", table=table) == "claude-sonnet-4-6"


@BOTH
def test_a_request_with_a_temperature_still_reaches_the_model(fake, kind):
    fake.script(kind, Reply(text="warm answer"))
    result = collect(make(kind, fake).stream(request(temperature=0.2)))
    assert result.text == "warm answer"
    assert len(fake.requests_for(kind)) == 1
