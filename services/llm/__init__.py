"""Language-model access: provider-neutral types (types), how calls fail (errors), the
model list of a provider (models), the Anthropic and OpenAI
providers over their official SDKs, the router (retry, circuit breaker, failover, cheap
routing), the offline fallback (offline), the price table (pricing) and the wiring from
Settings (factory, imported on its own).

The providers import their SDKs, which takes seconds; they are loaded on first use (PEP 562
module ``__getattr__``), so importing the package (the agent does) stays cheap.
"""

from .errors import (
    AuthenticationFailedError,
    BadRequestError,
    FatalProviderError,
    ModelNotFoundError,
    NoProviderAvailable,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryableProviderError,
    StreamInterruptedError,
)
from .offline import OfflineProvider, offline_answer
from .pricing import PRICES, Cost, Price, cost_usd
from .router import BreakerPolicy, CircuitBreaker, RetryPolicy, Router, is_simple_message
from .types import (
    ChatProvider,
    ChatRequest,
    Completion,
    Done,
    Message,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
    collect,
)

__all__ = [
    "AnthropicProvider",
    "AuthenticationFailedError",
    "BadRequestError",
    "BreakerPolicy",
    "CHEAP_ANTHROPIC_MODEL",
    "CHEAP_OPENAI_MODEL",
    "ChatProvider",
    "ChatRequest",
    "CircuitBreaker",
    "Completion",
    "Cost",
    "DEFAULT_ANTHROPIC_MODELS",
    "DEFAULT_OPENAI_MODELS",
    "Done",
    "FatalProviderError",
    "Message",
    "ModelNotFoundError",
    "NoProviderAvailable",
    "OfflineProvider",
    "OpenAIProvider",
    "PRICES",
    "Price",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RetryPolicy",
    "RetryableProviderError",
    "Router",
    "StreamError",
    "StreamEvent",
    "StreamInterruptedError",
    "TextDelta",
    "ToolCall",
    "ToolCallEvent",
    "ToolSpec",
    "Usage",
    "collect",
    "cost_usd",
    "deprecation_warnings",
    "is_simple_message",
    "newest_active_model",
    "offline_answer",
]


_LAZY = {
    "AnthropicProvider": "anthropic_provider",
    "CHEAP_ANTHROPIC_MODEL": "anthropic_provider",
    "DEFAULT_ANTHROPIC_MODELS": "anthropic_provider",
    "deprecation_warnings": "anthropic_provider",
    "newest_active_model": "anthropic_provider",
    "OpenAIProvider": "openai_provider",
    "CHEAP_OPENAI_MODEL": "openai_provider",
    "DEFAULT_OPENAI_MODELS": "openai_provider",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
