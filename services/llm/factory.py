"""Builds the router from Settings: which providers, in which order, with which models.

A provider is enabled when it can authenticate: Anthropic with ``ANTHROPIC_API_KEY``,
OpenAI with ``OPENAI_API_KEY`` or an ``OPENAI_CHAT_BASE_URL`` (a local vLLM/Ollama needs
no key). The offline provider is always the last fallback. At start-up every configured
Anthropic model that the installed SDK lists as deprecated is logged as a warning naming
its end-of-life date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime

from services.config import Settings, csv

from .anthropic_provider import AnthropicProvider, deprecation_warnings
from .common import ChatProvider
from .offline import OfflineProvider
from .openai_provider import OpenAIProvider
from .router import BreakerPolicy, RetryPolicy, Router

log = logging.getLogger(__name__)


def build_providers(settings: Settings) -> list[ChatProvider]:
    providers: list[ChatProvider] = []
    for name in csv(settings.llm_providers):
        if name == "anthropic" and settings.anthropic_api_key:
            providers.append(
                AnthropicProvider(
                    settings.anthropic_api_key,
                    models=csv(settings.anthropic_models),
                    base_url=settings.anthropic_base_url or None,
                    timeout=settings.llm_timeout_seconds,
                    connect_timeout=settings.llm_connect_timeout_seconds,
                    prompt_caching=settings.anthropic_prompt_caching,
                )
            )
        elif name == "openai" and (settings.openai_api_key or settings.openai_chat_base_url):
            providers.append(
                OpenAIProvider(
                    settings.openai_api_key,
                    models=csv(settings.openai_chat_models),
                    base_url=settings.openai_chat_base_url or settings.openai_base_url or None,
                    timeout=settings.llm_timeout_seconds,
                    connect_timeout=settings.llm_connect_timeout_seconds,
                )
            )
    return providers


def build_router(
    settings: Settings,
    *,
    today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    logger: logging.Logger | None = None,
) -> Router:
    logger = logger or log
    providers = build_providers(settings)
    if any(p.name == "anthropic" for p in providers):
        for warning in deprecation_warnings(csv(settings.anthropic_models), today()):
            logger.warning("ANTHROPIC_MODELS: %s", warning)
    if not providers:
        logger.warning(
            "no language model is configured (set ANTHROPIC_API_KEY or OPENAI_API_KEY); "
            "chat answers offline from memories"
        )
    cheap: dict[str, str] = {}
    if settings.llm_cheap_routing:
        if settings.anthropic_cheap_model:
            cheap["anthropic"] = settings.anthropic_cheap_model
        if settings.openai_cheap_model:
            cheap["openai"] = settings.openai_cheap_model
    return Router(
        providers,
        retry=RetryPolicy(
            max_retries=settings.llm_max_retries, base_delay=settings.llm_retry_base_seconds
        ),
        breaker=BreakerPolicy(
            failure_threshold=settings.llm_breaker_failures,
            open_seconds=settings.llm_breaker_open_seconds,
        ),
        cheap_models=cheap,
        fallback=OfflineProvider(),
    )
