"""Provider-neutral types for chat with tools: messages, tool specs and calls, stream
events, token usage, the request a provider serves, and the provider protocol.

Usage convention: ``Usage.input_tokens`` counts *uncached* input tokens only (Anthropic's
``input_tokens``; OpenAI's ``prompt_tokens`` minus cached/cache-written ones), so cost is
``input*in + cache_read*read + cache_write*write + output*out`` for every provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services.llm.errors import ProviderError

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
