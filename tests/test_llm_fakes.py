"""The wire-level fake speaks formats the real SDKs accept (JSON and SSE, tool use, usage,
errors), and records what they sent."""

from __future__ import annotations

import json
import math
import time
import urllib.request

import anthropic
import openai
import pytest

from tests.fakes.llm_server import Failure, Reply, ToolUse, embed_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def claude(fake):
    return anthropic.Anthropic(
        api_key="test-key", base_url=fake.anthropic_base_url, max_retries=0, timeout=5
    )


@pytest.fixture
def gpt(fake):
    return openai.OpenAI(
        api_key="test-key", base_url=fake.openai_base_url, max_retries=0, timeout=5
    )


def raw_post(url: str, body: dict) -> tuple[int, dict, str]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for frame in text.strip().split("\n\n"):
        name, data = None, ""
        for line in frame.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((name, data))
    return events


# -- Anthropic ------------------------------------------------------------------------------


def test_anthropic_json_message_with_tool_use_and_cache_usage(fake, claude):
    fake.script(
        "anthropic",
        Reply(
            text="Saving that.",
            tool_calls=[ToolUse("upsert_memory", {"content": "likes tea"}, id="toolu_1")],
            input_tokens=42,
            output_tokens=17,
            cache_read_tokens=100,
            cache_write_tokens=30,
        ),
    )
    msg = claude.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.content[0].text == "Saving that."
    assert msg.content[1].id == "toolu_1"
    assert msg.content[1].input == {"content": "likes tea"}
    assert msg.stop_reason == "tool_use"
    assert msg.model == "claude-sonnet-4-6"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (42, 17)
    assert msg.usage.cache_read_input_tokens == 100
    assert msg.usage.cache_creation_input_tokens == 30


def test_anthropic_stream_event_sequence_is_exact(fake):
    fake.script(
        "anthropic", Reply(text="one two", tool_calls=[ToolUse("search_memory", {"query": "tea"})])
    )
    status, headers, body = raw_post(
        fake.anthropic_base_url + "/v1/messages",
        {
            "model": "m",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = sse_events(body)
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * (names.count("content_block_delta") - 2),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data in events:
        assert json.loads(data)["type"] == name
    tool_start = json.loads(events[6][1])
    assert tool_start["content_block"]["type"] == "tool_use"
    partial = "".join(
        json.loads(d)["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and json.loads(d)["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == {"query": "tea"}
    delta = json.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert {"output_tokens", "input_tokens", "cache_read_input_tokens"} <= delta["usage"].keys()


def test_anthropic_sdk_stream_helper_accumulates(fake, claude):
    fake.script(
        "anthropic",
        Reply(
            text="Hello there, Alice.",
            tool_calls=[ToolUse("upsert_memory", {"content": "name is Alice", "context": "intro"})],
            input_tokens=11,
            output_tokens=9,
            cache_read_tokens=4,
        ),
    )
    texts = []
    with claude.messages.stream(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for text in stream.text_stream:
            texts.append(text)
        final = stream.get_final_message()
    assert len(texts) > 1 and "".join(texts) == "Hello there, Alice."
    assert final.content[1].input == {"content": "name is Alice", "context": "intro"}
    assert final.usage.output_tokens == 9
    assert final.usage.input_tokens == 11
    assert final.usage.cache_read_input_tokens == 4


def test_anthropic_errors_have_the_api_shape(fake, claude):
    fake.script(
        "anthropic",
        Failure.rate_limited(retry_after=3),
        Failure.overloaded(),
        Failure.model_not_found("claude-gone"),
        Failure.server_error(),
    )
    kwargs = dict(model="claude-gone", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError) as rate:
        claude.messages.create(**kwargs)
    assert rate.value.response.headers["retry-after"] == "3"
    assert rate.value.type == "rate_limit_error"
    with pytest.raises(anthropic.OverloadedError) as over:
        claude.messages.create(**kwargs)
    assert over.value.status_code == 529
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(**kwargs)
    assert missing.value.type == "not_found_error"
    assert missing.value.body["type"] == "error"
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.create(**kwargs)


def test_requests_are_recorded_with_headers_and_body(fake, claude):
    claude.messages.create(
        model="claude-haiku-4-5",
        max_tokens=7,
        system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello"}],
    )
    (req,) = fake.requests
    assert req.provider == "anthropic" and req.path == "/v1/messages"
    # anthropic==2.14 sends the key as a bearer token; older SDKs used x-api-key
    assert "test-key" in (req.headers.get("x-api-key"), req.headers.get("authorization", "")[7:])
    assert "anthropic-version" in req.headers
    assert req.body["model"] == "claude-haiku-4-5"
    assert req.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert req.model == "claude-haiku-4-5"


def test_default_reply_when_nothing_is_scripted(fake, claude, gpt):
    msg = claude.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert msg.content[0].text == fake.default_reply.text
    chat = gpt.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert chat.choices[0].message.content == fake.default_reply.text


def test_retired_model_answers_404_until_reset(fake, claude):
    fake.retire_model("claude-old")
    for _ in range(2):
        with pytest.raises(anthropic.NotFoundError):
            claude.messages.create(
                model="claude-old", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    ok = claude.messages.create(
        model="claude-new", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert ok.content[0].text


def test_stream_cut_breaks_the_sdk_stream(fake, claude):
    fake.script("anthropic", Reply(text="a b c d e f", cut_after_events=5))
    seen = []
    with pytest.raises(Exception) as err:
        for event in claude.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            seen.append(event.type)
    assert "message_stop" not in seen and "content_block_delta" in seen
    assert "incomplete" in str(err.value) or "closed" in str(err.value)


def test_slow_first_byte_times_out_the_client(fake):
    fake.script("anthropic", Reply(delay_s=1.0))
    client = anthropic.Anthropic(
        api_key="k", base_url=fake.anthropic_base_url, max_retries=0, timeout=0.2
    )
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 0.9


def test_latency_to_first_token_is_applied(fake, claude):
    fake.latency_s = 0.15
    try:
        started = time.monotonic()
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert time.monotonic() - started >= 0.15
    finally:
        fake.latency_s = 0.0


# -- OpenAI ---------------------------------------------------------------------------------


def test_openai_json_completion_with_tool_calls_and_cached_usage(fake, gpt):
    fake.script(
        "openai",
        Reply(
            text="",
            tool_calls=[ToolUse("delete_memory", {"memory_id": "m1"}, id="call_1")],
            input_tokens=20,
            output_tokens=6,
            cache_read_tokens=64,
        ),
    )
    chat = gpt.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "forget"}]
    )
    choice = chat.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_1", "delete_memory")
    assert json.loads(call.function.arguments) == {"memory_id": "m1"}
    assert chat.usage.prompt_tokens == 84  # includes the cached tokens, like the real API
    assert chat.usage.prompt_tokens_details.cached_tokens == 64
    assert chat.usage.completion_tokens == 6


def test_openai_stream_chunks_tool_deltas_usage_and_done(fake, gpt):
    fake.script(
        "openai",
        Reply(
            text="Sure thing",
            tool_calls=[ToolUse("search_memory", {"query": "coffee order"})],
            output_tokens=8,
        ),
    )
    chunks = list(
        gpt.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Sure thing"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
    )
    assert json.loads(args) == {"query": "coffee order"}
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8

    # raw wire: data lines ending with [DONE]; no usage chunk unless asked for
    status, _, body = raw_post(
        fake.openai_base_url + "/chat/completions",
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 200
    lines = [ln for ln in body.split("\n") if ln]
    assert all(ln.startswith("data: ") for ln in lines)
    assert lines[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(ln[6:]) for ln in lines[:-1])


def test_openai_errors_have_the_api_shape(fake, gpt):
    fake.script("openai", Failure.rate_limited(retry_after=2), Failure.model_not_found("gpt-x"))
    kwargs = dict(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as rate:
        gpt.chat.completions.create(**kwargs)
    assert rate.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.NotFoundError) as missing:
        gpt.chat.completions.create(**kwargs)
    assert missing.value.code == "model_not_found"
    assert fake.requests[0].headers["authorization"] == "Bearer test-key"


# -- Embeddings -----------------------------------------------------------------------------


def test_embeddings_default_dimension_usage_and_base64(fake, gpt):
    resp = gpt.embeddings.create(
        model="text-embedding-3-small", input=["I like green tea", "hello"]
    )
    assert [d.index for d in resp.data] == [0, 1]
    vec = resp.data[0].embedding
    assert len(vec) == 1536
    assert math.isclose(sum(v * v for v in vec), 1.0, rel_tol=1e-5)
    assert resp.usage.prompt_tokens == 5
    expected = embed_text("I like green tea", 1536)
    assert max(abs(a - b) for a, b in zip(vec, expected)) < 1e-6  # float32 on the wire
    assert fake.requests[-1].path == "/v1/embeddings"


def test_embeddings_dimensions_are_deterministic_and_meaningful(fake, gpt):
    def embed(text):
        return (
            gpt.embeddings.create(
                model="text-embedding-3-large", input=text, dimensions=64, encoding_format="float"
            )
            .data[0]
            .embedding
        )

    a, b, c = embed("I like green tea"), embed("I like green tea a lot"), embed("my car is red")
    assert len(a) == 64 and a == embed("I like green tea")

    def cos(x, y):
        return sum(p * q for p, q in zip(x, y))

    assert cos(a, b) > cos(a, c)
    assert (
        len(gpt.embeddings.create(model="text-embedding-3-large", input="x").data[0].embedding)
        == 3072
    )
