"""OpenAI Chat Completions provider over the official ``openai`` SDK: streaming with
``stream_options.include_usage``, tools/tool_calls, usage with cached prompt tokens, any
model and any OpenAI-compatible base URL (vLLM, Ollama, ...), and the same ordered model
list with not-found fallback as the Anthropic provider. OpenAI caches long prompt prefixes
automatically, so there is nothing to mark; the cached count is read from
``usage.prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import openai

from .errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    StreamInterruptedError,
    error_for_status,
    parse_retry_after,
)
from .models import ModelChain, attempt_timeouts
from .types import (
    ChatRequest,
    Done,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
)

PROVIDER = "openai"
# gpt-4.1-mini is priced in pricing.py; the installed SDK (openai==3.57.0) lists the gpt-4.1
# and gpt-4o families with a shutdown date of 2027-01-14, hence a newer second entry.
DEFAULT_OPENAI_MODELS: tuple[str, ...] = ("gpt-4.1-mini", "gpt-5.4-mini")
CHEAP_OPENAI_MODEL = "gpt-4o-mini"

_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filter",
}

log = logging.getLogger(__name__)


class OpenAIProvider:
    """Streams one Chat Completions response.

    ``max_tokens_param`` is ``max_completion_tokens`` for api.openai.com (required by the
    reasoning models) and ``max_tokens`` for other base URLs unless given.
    ``name`` lets two OpenAI-compatible backends sit side by side in the router.
    """

    def __init__(
        self,
        api_key: str = "",
        *,
        models: Sequence[str] = DEFAULT_OPENAI_MODELS,
        base_url: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        include_usage: bool = True,
        max_tokens_param: str | None = None,
        name: str = PROVIDER,
        client: openai.OpenAI | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.models = ModelChain(models)
        self.include_usage = include_usage
        self.max_tokens_param = max_tokens_param or (
            "max_completion_tokens"
            if not base_url or "api.openai.com" in base_url
            else "max_tokens"
        )
        self.log = logger or log
        self.client = client or openai.OpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=openai.Timeout(timeout, connect=min(connect_timeout, timeout)),
            max_retries=0,
        )
        self.timeout, self.connect_timeout = timeout, connect_timeout

    def _timeout(self, request: ChatRequest) -> dict[str, Any]:
        """``timeout=`` for one call: within the caller's deadline when it has one."""
        cut = attempt_timeouts(self.timeout, self.connect_timeout, request.time_left)
        return {} if cut is None else {"timeout": openai.Timeout(cut[0], connect=cut[1])}

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        return self.models.stream(self.name, request, self._stream_model, self.log)

    def build_params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The keyword arguments for ``client.chat.completions.create``."""
        messages: list[dict[str, Any]] = []
        if request.full_system:  # stable part first: OpenAI caches the longest prefix
            messages.append({"role": "system", "content": request.full_system})
        messages += to_openai_messages(request.messages)
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            self.max_tokens_param: request.max_tokens,
        }
        if self.include_usage:
            params["stream_options"] = {"include_usage": True}
        if request.tools:
            params["tools"] = [to_openai_tool(t) for t in request.tools]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    def _stream_model(self, request: ChatRequest, model: str) -> Iterator[StreamEvent]:
        params = self.build_params(request, model)
        try:
            stream = self.client.chat.completions.create(**params, **self._timeout(request))
        except Exception as exc:  # noqa: BLE001 - classified below
            raise map_error(exc, model, self.name) from exc
        usage = Usage()
        finish: str | None = None
        reported_model = model
        calls: dict[int, dict[str, Any]] = {}
        try:
            with stream:
                for chunk in stream:
                    reported_model = chunk.model or reported_model
                    if chunk.usage is not None:
                        usage = usage_from_openai(chunk.usage)
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        delta = choice.delta
                        if delta is not None and delta.content:
                            yield TextDelta(delta.content)
                        for tc in (delta.tool_calls if delta is not None else None) or ():
                            slot = calls.setdefault(tc.index, {"id": "", "name": "", "args": []})
                            if tc.id:
                                slot["id"] = tc.id
                            if tc.function is not None:
                                if tc.function.name:
                                    slot["name"] = tc.function.name
                                if tc.function.arguments:
                                    slot["args"].append(tc.function.arguments)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            raise map_error(exc, model, self.name) from exc
        if finish is None:
            raise StreamInterruptedError(
                f"{self.name} stream ended without a finish_reason", provider=self.name, model=model
            )
        for index in sorted(calls):
            slot = calls[index]
            yield ToolCallEvent(ToolCall.from_json(slot["id"], slot["name"], "".join(slot["args"])))
        yield Done(
            usage=usage,
            stop_reason=_STOP_REASONS.get(finish, finish),
            model=reported_model,
            provider=self.name,
        )


def usage_from_openai(usage: Any) -> Usage:
    """``prompt_tokens`` include cached (and cache-written) tokens; ours do not."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", None) or 0)
    written = int(getattr(details, "cache_write_tokens", None) or 0)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    return Usage(
        input_tokens=max(0, prompt - cached - written),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


def to_openai_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": dict(spec.parameters),
        },
    }


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content})
        elif m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
                    }
                    for c in m.tool_calls
                ]
            elif not m.content:
                continue
            out.append(msg)
        else:
            out.append({"role": "user", "content": m.content})
    return out


def map_error(exc: BaseException, model: str, provider: str = PROVIDER) -> ProviderError:
    """Classify an SDK/transport exception."""
    if isinstance(exc, ProviderError):
        return exc
    kw: dict[str, Any] = {"provider": provider, "model": model}
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return ProviderTimeoutError(f"{provider} timed out: {exc}", **kw)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError(f"{provider} connection failed: {exc}", **kw)
    if isinstance(exc, openai.APIStatusError):
        code = getattr(exc, "code", None)
        return error_for_status(
            exc.status_code,
            f"{provider} {exc.status_code}: {exc.message}",
            error_type=getattr(exc, "type", None),
            error_code=code if isinstance(code, str) else None,
            retry_after=parse_retry_after(exc.response.headers),
            **kw,
        )
    if isinstance(exc, openai.APIError):  # an error object inside the stream
        return ProviderUnavailableError(f"{provider} stream error: {exc}", **kw)
    if isinstance(exc, httpx2.TransportError):
        return StreamInterruptedError(f"{provider} stream broken: {exc}", **kw)
    return ProviderError(f"{provider} call failed: {exc!r}", **kw)
