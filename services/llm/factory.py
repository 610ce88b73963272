"""Builds the router from Settings: which providers, in which order, with which models.

A provider is enabled when it can authenticate: Anthropic with ``ANTHROPIC_API_KEY``,
OpenAI with ``OPENAI_API_KEY`` or an ``OPENAI_CHAT_BASE_URL`` (a local vLLM/Ollama needs
no key). The offline provider is always the last fallback. At start-up every configured
Anthropic model that the installed SDK lists as deprecated is logged as a warning naming
its end-of-life date.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from services.config import Settings, csv
from services.greenlets import one_os_thread

from .offline import OfflineProvider
from .router import BreakerPolicy, RetryPolicy, Router
from .types import ChatProvider, ChatRequest, StreamEvent

log = logging.getLogger(__name__)

# What makes building the router slow: the SDKs they import.
PROVIDER_MODULES = ("services.llm.anthropic_provider", "services.llm.openai_provider")


def build_providers(settings: Settings) -> list[ChatProvider]:
    # Imported here: the SDKs take seconds to import (see WarmingRouter).
    from .anthropic_provider import AnthropicProvider
    from .openai_provider import OpenAIProvider

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
    from .anthropic_provider import deprecation_warnings

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
        deadline=settings.llm_turn_deadline_seconds,
    )


class WarmingRouter:
    """The router, built on a thread at start-up.

    Importing the anthropic and openai SDKs takes a few seconds; building the router on a
    thread lets the service answer its readiness probe meanwhile (Cloud Run cold starts).
    A turn that arrives before the router is ready waits for it.
    """

    def __init__(
        self, build: Callable[[], Router], modules: Sequence[str] = PROVIDER_MODULES
    ) -> None:
        self._build = build
        self._modules = modules
        self._ready = threading.Event()
        self._router: Router | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._warm, name="router-warm-up", daemon=True).start()

    def _warm(self) -> None:
        try:
            # On an OS thread: under the gevent worker this thread is a greenlet, and
            # seconds of imports would hold every request (the readiness probe too).
            importer = one_os_thread("sdk-import")
            importer.submit(_import_all, self._modules).result()
            importer.shutdown(wait=False)
            self._router = self._build()
        except BaseException as error:  # surfaced to the first caller
            self._error = error
        finally:
            self._ready.set()

    def router(self) -> Router:
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._router is not None
        return self._router

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        return self.router().stream(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router(), name)


def _import_all(modules: Sequence[str]) -> None:
    for name in modules:
        importlib.import_module(name)
