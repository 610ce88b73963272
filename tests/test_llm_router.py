"""The router over real providers and the wire fake: retries, breaker, failover, cheap
routing, offline fallback, and its construction from Settings."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date

import pytest

from services.config import Settings
from services.llm import (
    AnthropicProvider,
    BreakerPolicy,
    ChatRequest,
    Done,
    Message,
    NoProviderAvailable,
    OfflineProvider,
    OpenAIProvider,
    RetryPolicy,
    Router,
    StreamError,
    TextDelta,
    collect,
    is_simple_message,
)
from services.llm.anthropic_provider import CARD_MODEL
from services.llm.factory import build_router
from tests.fakes.llm_server import Failure, Reply

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(text: str = "Tell me about my plans for next week?") -> ChatRequest:
    return ChatRequest(system="sys", messages=[Message("user", text)], memories=["Likes tea"])


def make_router(fake, *, timeout=5.0, clock=None, fallback=True, **kw) -> Router:
    return Router(
        [
            AnthropicProvider("k", base_url=fake.anthropic_base_url, timeout=timeout),
            OpenAIProvider("k", base_url=fake.openai_base_url, timeout=timeout),
        ],
        retry=kw.pop("retry", RetryPolicy(max_retries=1, base_delay=0.01)),
        sleep=lambda s: None,
        clock=clock or Clock(),
        fallback=OfflineProvider() if fallback else None,
        **kw,
    )


def test_timeout_before_first_byte_is_retried(fake):
    fake.script("anthropic", Reply(delay_s=1.0), Reply(text="second try"))
    out = collect(make_router(fake, timeout=0.3).stream(request()))
    assert out.text == "second try" and out.done.provider == "anthropic"


def test_bad_request_is_not_retried_and_fails_over(fake):
    fake.script("anthropic", Failure(400, "bad"))
    fake.script("openai", Reply(text="openai"))
    out = collect(make_router(fake).stream(request()))
    assert out.text == "openai" and len(fake.requests_for("anthropic")) == 1


def test_long_retry_after_fails_over_instead_of_waiting(fake):
    fake.script("anthropic", Failure.rate_limited(retry_after=120))
    fake.script("openai", Reply(text="openai"))
    out = collect(make_router(fake).stream(request()))
    assert out.text == "openai" and len(fake.requests_for("anthropic")) == 1


def test_the_deadline_bounds_retries_backoff_and_failover(fake):
    clock, sleeps = Clock(), []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    fake.script("anthropic", Failure.rate_limited(retry_after=3), Failure.rate_limited(10))
    fake.fail_always("openai", Failure.rate_limited(retry_after=10))
    router = Router(
        [
            AnthropicProvider("k", base_url=fake.anthropic_base_url),
            OpenAIProvider("k", base_url=fake.openai_base_url),
        ],
        retry=RetryPolicy(max_retries=2),
        sleep=sleep,
        clock=clock,
        fallback=OfflineProvider(),
        deadline=5.0,
    )
    out = collect(router.stream(request()))
    # One 3 s backoff fits in the 5 s deadline; waiting 10 s more does not: fail over,
    # and past the deadline, answer offline without waiting.
    assert sleeps == [3]
    assert len(fake.requests_for("anthropic")) == 2 and len(fake.requests_for("openai")) == 1
    assert out.done.provider == "offline"
    assert out.text.startswith("The language model did not answer in time")


def test_a_request_time_left_wins_over_the_router_deadline(fake):
    fake.fail_always("anthropic", Failure(503, "down"))
    fake.fail_always("openai", Failure(503, "down"))
    router = make_router(fake, deadline=60.0)
    out = collect(router.stream(replace(request(), time_left=0.0)))
    assert out.done.provider == "offline" and not fake.requests  # no time: not even one try


def test_no_retry_once_output_started(fake):
    fake.script("anthropic", Reply(text="a b c d", cut_after_events=5))
    events = list(make_router(fake).stream(request()))
    assert isinstance(events[0], TextDelta) and isinstance(events[-1], StreamError)
    assert events[-1].partial_text == "a b "
    assert len(fake.requests) == 1


def test_breaker_opens_skips_the_provider_then_half_opens(fake):
    clock = Clock()
    router = make_router(
        fake,
        clock=clock,
        retry=RetryPolicy(max_retries=0),
        breaker=BreakerPolicy(failure_threshold=2, open_seconds=30),
    )
    fake.fail_always("anthropic", Failure(500, "boom"))
    for _ in range(2):
        assert collect(router.stream(request())).done.provider == "openai"
    assert router.breakers["anthropic"].state == "open"
    before = len(fake.requests_for("anthropic"))
    assert collect(router.stream(request())).done.provider == "openai"
    assert len(fake.requests_for("anthropic")) == before  # skipped while open

    fake.fail_always("anthropic", None)
    clock.now += 31
    assert router.breakers["anthropic"].state == "half_open"
    assert collect(router.stream(request())).done.provider == "anthropic"
    assert router.breakers["anthropic"].state == "closed"


def test_everything_down_without_fallback_raises(fake):
    fake.fail_always("anthropic", Failure(503))
    fake.fail_always("openai", Failure(503))
    with pytest.raises(NoProviderAvailable) as exc:
        list(make_router(fake, fallback=False).stream(request()))
    assert {e.provider for e in exc.value.errors} == {"anthropic", "openai"}


def test_everything_down_with_fallback_answers_offline(fake):
    fake.fail_always("anthropic", Failure(503))
    fake.fail_always("openai", Failure(503))
    out = collect(make_router(fake).stream(request()))
    assert out.done == Done(out.done.usage, "end_turn", "offline", "offline")
    assert "No language model is available" in out.text and "Likes tea" in out.text


def test_simple_messages_go_to_the_cheap_model(fake):
    router = make_router(fake, cheap_models={"anthropic": "claude-haiku-4-5"})
    collect(router.stream(request("thanks, sounds good")))
    collect(router.stream(request("Please remember that I moved to Porto")))
    models = [r.model for r in fake.requests_for("anthropic")]
    assert models == ["claude-haiku-4-5", CARD_MODEL]


@pytest.mark.parametrize(
    "text,simple",
    [
        ("thanks!", True),
        ("ok, sounds good", True),
        ("what is my name?", False),
        ("remember that I like tea", False),
        ("line one\nline two", False),
        ("x" * 81, False),
    ],
)
def test_simple_message_rule(text, simple):
    assert is_simple_message(request(text)) is simple


# ---- construction from Settings --------------------------------------------------------------


def test_no_keys_means_offline_only(caplog):
    router = build_router(Settings())
    assert router.providers == [] and isinstance(router.fallback, OfflineProvider)
    assert "no language model is configured" in caplog.text


def test_factory_order_models_and_deprecation_warning(fake, caplog):
    settings = Settings(
        llm_providers="openai,anthropic",
        anthropic_api_key="k",
        anthropic_base_url=fake.anthropic_base_url,
        openai_chat_base_url=fake.openai_base_url,  # a local OpenAI-compatible server: no key
        openai_chat_models="local-llama",
        llm_cheap_routing=True,
    )
    with caplog.at_level(logging.WARNING):
        router = build_router(settings, today=lambda: date(2026, 11, 25))
    assert [p.name for p in router.providers] == ["openai", "anthropic"]
    assert router.providers[0].models.models == ("local-llama",)
    assert router.cheap_models == {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini"}
    assert CARD_MODEL in caplog.text and "2026-11-30" in caplog.text and "5 days" in caplog.text
    fake.script("openai", Reply(text="local"))
    out = collect(router.stream(request()))
    assert out.text == "local" and fake.requests_for("openai")[0].model == "local-llama"


def test_settings_defaults_match_the_provider_defaults():
    from services.llm import (
        CHEAP_ANTHROPIC_MODEL,
        CHEAP_OPENAI_MODEL,
        DEFAULT_ANTHROPIC_MODELS,
        DEFAULT_OPENAI_MODELS,
    )

    settings = Settings()
    assert settings.anthropic_models == ",".join(DEFAULT_ANTHROPIC_MODELS)
    assert settings.openai_chat_models == ",".join(DEFAULT_OPENAI_MODELS)
    assert settings.anthropic_cheap_model == CHEAP_ANTHROPIC_MODEL
    assert settings.openai_cheap_model == CHEAP_OPENAI_MODEL
