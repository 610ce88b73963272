"""Provider-neutral types for chat with tools: messages, tool specs and calls, stream
events, token usage, the request a provider serves, the ProviderError hierarchy, and the
ordered model list with its process-wide memory of retired models.

Usage convention: ``Usage.input_tokens`` counts *uncached* input tokens only (Anthropic's
``input_tokens``; OpenAI's ``prompt_tokens`` minus cached/cache-written ones), so cost is
``input*in + cache_read*read + cache_write*write + output*out`` for every provider.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A function call requested by the model.

    ``arguments`` is the parsed JSON object; when the model sent something that is not a
    JSON object, ``arguments`` is empty and ``arguments_error`` says why (``raw_arguments``
    keeps what was sent), so the caller can answer the model with an error result.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    raw_arguments: str = ""
    arguments_error: str | None = None

    @classmethod
    def from_json(cls, id: str, name: str, raw: str) -> ToolCall:
        text = raw or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            return cls(id, name, {}, raw, f"arguments are not valid JSON: {exc}")
        if not isinstance(value, dict):
            return cls(id, name, {}, raw, "arguments must be a JSON object")
        return cls(id, name, value, raw)


@dataclass(frozen=True)
class Message:
    """One conversation message. ``role="tool"`` carries a tool result for
    ``tool_call_id``; an assistant message may carry ``tool_calls``."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass(frozen=True)
class ChatRequest:
    """What the agent asks for.

    ``system`` is the stable instructions (identical across turns, so providers can cache
    them); ``context`` is the per-turn part of the system prompt (current time, retrieved
    memories), sent after it and never marked for caching. ``memories`` are the retrieved
    memories as plain text, for the offline provider (models see them through ``context``).
    ``model`` overrides the provider's model list (the router's cheap-model routing uses
    it); ``None`` means the provider's first live model. ``time_left`` is how many seconds
    the caller still allows (the turn's deadline); a provider waits at most that long for
    any read, and the router gives the offline answer rather than start past it. ``None``:
    no deadline of the caller's own.
    """

    system: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    max_tokens: int = 1024
    temperature: float | None = None
    model: str | None = None
    context: str = ""
    memories: Sequence[str] = ()
    time_left: float | None = None

    @property
    def full_system(self) -> str:
        return "\n\n".join(part for part in (self.system, self.context) if part)


# -- stream events ---------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    call: ToolCall


@dataclass(frozen=True)
class Done:
    """End of one model response. ``stop_reason`` is normalised to ``end_turn``,
    ``tool_use``, ``max_tokens``, ``content_filter`` or the provider's own word."""

    usage: Usage
    stop_reason: str
    model: str
    provider: str


@dataclass(frozen=True)
class StreamError:
    """The stream broke after output had started; nothing was retried. ``partial_text``
    is everything streamed before the break (also already delivered as TextDeltas)."""

    error: ProviderError
    partial_text: str
    provider: str
    model: str


StreamEvent = TextDelta | ToolCallEvent | Done | StreamError


@dataclass
class Completion:
    """A whole response gathered from a stream (see :func:`collect`)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    done: Done | None = None
    error: StreamError | None = None


def collect(events: Iterable[StreamEvent]) -> Completion:
    out = Completion()
    parts: list[str] = []
    for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ToolCallEvent):
            out.tool_calls.append(event.call)
        elif isinstance(event, Done):
            out.done = event
        elif isinstance(event, StreamError):
            out.error = event
    out.text = "".join(parts)
    return out


class ChatProvider(Protocol):
    """A streaming chat model. ``stream`` raises :class:`ProviderError` (possibly after
    yielding some events, if the connection breaks mid-stream)."""

    name: str

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]: ...


# -- errors ------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider call failed. ``retryable`` says whether trying again may help."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after


class RetryableProviderError(ProviderError):
    """429, 5xx (incl. Anthropic's 529 overloaded), 408/409, timeouts, connection errors."""

    retryable = True


class RateLimitedError(RetryableProviderError):
    pass


class ProviderUnavailableError(RetryableProviderError):
    pass


class ProviderTimeoutError(RetryableProviderError):
    pass


class ProviderConnectionError(RetryableProviderError):
    pass


class StreamInterruptedError(RetryableProviderError):
    """The connection dropped or the stream ended without its terminating event."""


class ModelNotFoundError(ProviderError):
    """404 ``not_found_error``: the model is retired or unknown to this API."""


class FatalProviderError(ProviderError):
    """400/401/403 and other 4xx: retrying the same request will not help."""


class AuthenticationFailedError(FatalProviderError):
    pass


class BadRequestError(FatalProviderError):
    pass


class NoProviderAvailable(Exception):
    """No provider is configured, or every one failed (or is circuit-open) before
    producing output. ``errors`` holds the last error per provider tried."""

    def __init__(self, message: str, errors: Sequence[ProviderError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str,
    error_type: str | None = None,
    error_code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Classify an HTTP error status into the hierarchy."""
    kw: dict[str, Any] = {"provider": provider, "model": model, "status": status}
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **kw)
    if status >= 500 or status in (408, 409):
        return ProviderUnavailableError(message, retry_after=retry_after, **kw)
    if status == 404 and (
        error_type in (None, "not_found_error", "invalid_request_error")
        or error_code == "model_not_found"
    ):
        return ModelNotFoundError(message, **kw)
    if status in (401, 403):
        return AuthenticationFailedError(message, **kw)
    if status in (400, 413, 422):
        return BadRequestError(message, **kw)
    return FatalProviderError(message, **kw)


def attempt_timeouts(
    read: float, connect: float, time_left: float | None
) -> tuple[float, float] | None:
    """(read, connect) seconds for one call: the configured ones, cut to the caller's time
    left; None when the caller has no deadline (the client's own timeouts apply)."""
    if time_left is None:
        return None
    read = max(0.001, min(read, time_left))
    return read, min(connect, read)


def parse_retry_after(
    headers: Mapping[str, str] | None, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


# -- model lists -------------------------------------------------------------------------


class ModelChain:
    """An ordered list of models for one provider that remembers, for the life of the
    process (of this object), which models the API said do not exist."""

    def __init__(self, models: Sequence[str]) -> None:
        cleaned = [m.strip() for m in models if m and m.strip()]
        if not cleaned:
            raise ValueError("at least one model is required")
        self.models: tuple[str, ...] = tuple(dict.fromkeys(cleaned))
        self._retired: set[str] = set()
        self._lock = threading.Lock()

    def candidates(self, preferred: str | None = None) -> list[str]:
        """Models to try in order: ``preferred`` first (unless retired), then the list."""
        with self._lock:
            order = ([preferred] if preferred else []) + list(self.models)
            return [m for m in dict.fromkeys(order) if m not in self._retired]

    def retire(self, model: str) -> None:
        with self._lock:
            self._retired.add(model)

    @property
    def retired(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._retired)

    @property
    def current(self) -> str | None:
        live = self.candidates()
        return live[0] if live else None

    def stream(
        self,
        provider: str,
        request: ChatRequest,
        stream_model: Callable[[ChatRequest, str], Iterator[StreamEvent]],
        log: Any,
    ) -> Iterator[StreamEvent]:
        """Stream from the first live model; one the API says does not exist is retired
        (for the life of the process) and the next one is tried."""
        last: ModelNotFoundError | None = None
        for model in self.candidates(request.model):
            try:
                yield from stream_model(request, model)
                return
            except ModelNotFoundError as exc:
                self.retire(model)
                log.warning(
                    "%s model %s not found (%s); moving to the next configured model",
                    provider,
                    model,
                    exc,
                )
                last = exc
        raise ModelNotFoundError(
            f"no configured {provider} model is available (tried/retired: "
            f"{', '.join(sorted(self.retired)) or 'none'})"
            + (f"; last error: {last}" if last else ""),
            provider=provider,
            model=request.model or self.models[0],
            status=404,
        )
