"""Anthropic Messages API provider over the official ``anthropic`` SDK: streaming, tool
use, usage with prompt-cache tokens, prompt caching (``cache_control`` on the system block
and the last tool), an ordered model list that skips models the API reports as not found,
and model-lifecycle helpers that read the installed SDK's own tables.

Model lifecycle (checked against anthropic==2.14.0): ``anthropic/_data/deprecated_models.py``
lists ``claude-sonnet-4-5-20250929`` with end-of-life "November 30th, 2026"; the SDK's model
list (``anthropic.types.Model``, newest first) names ``claude-sonnet-5-5`` as the newest
Sonnet, which is not in the deprecation table, so it is the default successor.
:func:`newest_active_model` recomputes that from the installed SDK.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import anthropic
import httpx2
import orjson

from .errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    StreamInterruptedError,
    error_for_status,
    parse_retry_after,
)
from .models import ModelChain, attempt_timeouts
from .sse import sse_events
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

PROVIDER = "anthropic"
CARD_MODEL = "claude-sonnet-4-5-20250929"
SUCCESSOR_MODEL = "claude-sonnet-5-5"
DEFAULT_ANTHROPIC_MODELS: tuple[str, ...] = (CARD_MODEL, SUCCESSOR_MODEL)
CHEAP_ANTHROPIC_MODEL = "claude-haiku-4-5"
EPHEMERAL = {"type": "ephemeral"}

_STOP_REASONS = {"end_turn": "end_turn", "stop_sequence": "end_turn", "tool_use": "tool_use"}

log = logging.getLogger(__name__)


class AnthropicProvider:
    """Streams one model response. Not-found models are skipped (and remembered) in
    favour of the next model in ``models``; other errors raise :class:`ProviderError`."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str = "",
        *,
        models: Sequence[str] = DEFAULT_ANTHROPIC_MODELS,
        base_url: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        prompt_caching: bool = True,
        client: anthropic.Anthropic | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.models = ModelChain(models)
        self.prompt_caching = prompt_caching
        self.log = logger or log
        self.client = client or anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=anthropic.Timeout(timeout, connect=min(connect_timeout, timeout)),
            max_retries=0,
        )
        self.timeout, self.connect_timeout = timeout, connect_timeout

    def _timeout(self, request: ChatRequest) -> dict[str, Any]:
        """``timeout=`` for one call: within the caller's deadline when it has one."""
        cut = attempt_timeouts(self.timeout, self.connect_timeout, request.time_left)
        return {} if cut is None else {"timeout": anthropic.Timeout(cut[0], connect=cut[1])}

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        return self.models.stream(PROVIDER, request, self._stream_model, self.log)

    def build_params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The keyword arguments for ``client.messages.create`` (minus ``stream``)."""
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": to_anthropic_messages(request.messages),
        }
        system: list[dict[str, Any]] = []
        if request.system:
            block: dict[str, Any] = {"type": "text", "text": request.system}
            if self.prompt_caching:
                block["cache_control"] = EPHEMERAL
            system.append(block)
        if request.context:  # changes every turn: after the cached prefix, never cached
            system.append({"type": "text", "text": request.context})
        if system:
            params["system"] = system
        if request.tools:
            tools = [to_anthropic_tool(t) for t in request.tools]
            if self.prompt_caching:
                tools[-1]["cache_control"] = EPHEMERAL
            params["tools"] = tools
        # request.temperature is not sent: the installed SDK's messages.create has no
        # temperature parameter any more, and passing it failed every such call over to the
        # offline answer.
        return params

    def _stream_model(self, request: ChatRequest, model: str) -> Iterator[StreamEvent]:
        params = self.build_params(request, model)
        try:
            stream = self.client.messages.create(stream=True, **params, **self._timeout(request))
        except Exception as exc:  # noqa: BLE001 - classified below
            raise map_error(exc, model) from exc
        usage = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        stop_reason = ""
        reported_model = model
        tools: dict[int, dict[str, Any]] = {}
        finished = False
        try:
            with stream:
                for name, data in sse_events(stream.response.iter_bytes()):
                    if name == "ping":
                        continue
                    if name == "error":
                        raise stream_error(data, model)
                    event = orjson.loads(data)
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield TextDelta(delta["text"])
                        elif delta.get("type") == "input_json_delta" and event["index"] in tools:
                            tools[event["index"]]["json"].append(delta.get("partial_json", ""))
                    elif kind == "message_start":
                        reported_model = event["message"].get("model") or model
                        _merge_usage(usage, event["message"].get("usage"))
                    elif kind == "content_block_start":
                        block = event["content_block"]
                        if block.get("type") == "tool_use":
                            tools[event["index"]] = {
                                "id": block["id"],
                                "name": block["name"],
                                "json": [],
                            }
                    elif kind == "content_block_stop":
                        tool = tools.pop(event["index"], None)
                        if tool is not None:
                            raw = "".join(tool["json"])
                            yield ToolCallEvent(ToolCall.from_json(tool["id"], tool["name"], raw))
                    elif kind == "message_delta":
                        stop_reason = event["delta"].get("stop_reason") or stop_reason
                        _merge_usage(usage, event.get("usage"))
                    elif kind == "message_stop":
                        finished = True
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            raise map_error(exc, model) from exc
        if not finished:
            raise StreamInterruptedError(
                "anthropic stream ended without message_stop", provider=PROVIDER, model=model
            )
        yield Done(
            usage=Usage(usage["input"], usage["output"], usage["cache_read"], usage["cache_write"]),
            stop_reason=_STOP_REASONS.get(stop_reason, stop_reason or "end_turn"),
            model=reported_model,
            provider=PROVIDER,
        )


_USAGE_FIELDS = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_input_tokens"),
    ("cache_write", "cache_creation_input_tokens"),
)


def _merge_usage(acc: dict[str, int], usage: dict[str, Any] | None) -> None:
    """Fold a (cumulative) usage object from message_start/message_delta into ``acc``."""
    if not usage:
        return
    for key, field in _USAGE_FIELDS:
        value = usage.get(field)
        if value is not None:
            acc[key] = int(value)


def stream_error(data: bytes, model: str) -> ProviderError:
    """The error for an ``event: error`` inside a 200 stream (the API's overload and rate
    limits can arrive this way), classified by its ``error.type``."""
    try:
        error = orjson.loads(data).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    error_type = error.get("type") if isinstance(error, dict) else None
    detail = (error.get("message") if isinstance(error, dict) else None) or data.decode(
        errors="replace"
    )
    return _in_stream_error(error_type, f"anthropic 200 {error_type or ''}: {detail}", model)


def _in_stream_error(error_type: str | None, message: str, model: str) -> ProviderError:
    kw: dict[str, Any] = {"provider": PROVIDER, "model": model}
    if error_type == "rate_limit_error":
        return RateLimitedError(message, **kw)
    if error_type in ("overloaded_error", "api_error"):
        return ProviderUnavailableError(message, **kw)
    return StreamInterruptedError(message, **kw)


def to_anthropic_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "input_schema": dict(spec.parameters),
    }


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages as Anthropic ``messages``: tool results become ``tool_result`` blocks
    in a user turn, assistant tool calls become ``tool_use`` blocks, and consecutive
    messages of the same role are merged (the API wants alternating turns)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        blocks: list[dict[str, Any]]
        if m.role == "tool":
            role = "user"
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": m.tool_call_id or "",
                "content": m.content,
            }
            if m.is_error:
                result["is_error"] = True
            blocks = [result]
        elif m.role == "assistant":
            role = "assistant"
            blocks = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                for c in m.tool_calls
            ]
        else:
            role = "user"
            blocks = [{"type": "text", "text": m.content}] if m.content else []
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def map_error(exc: BaseException, model: str) -> ProviderError:
    """Classify an SDK/transport exception."""
    if isinstance(exc, ProviderError):
        return exc
    kw: dict[str, Any] = {"provider": PROVIDER, "model": model}
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return ProviderTimeoutError(f"anthropic timed out: {exc}", **kw)
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderConnectionError(f"anthropic connection failed: {exc}", **kw)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        error_type = getattr(exc, "type", None)
        message = (
            f"anthropic {status} {error_type or ''}: {getattr(exc, 'api_message', None) or exc}"
        )
        if status < 400:  # an `event: error` inside a 200 stream
            return _in_stream_error(error_type, message, model)
        return error_for_status(
            status,
            message,
            error_type=error_type,
            retry_after=parse_retry_after(exc.response.headers),
            **kw,
        )
    if isinstance(exc, httpx2.TransportError):
        return StreamInterruptedError(f"anthropic stream broken: {exc}", **kw)
    return ProviderError(f"anthropic call failed: {exc!r}", **kw)


# -- model lifecycle -----------------------------------------------------------------------

_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")


def parse_sdk_date(text: str) -> date | None:
    """``"November 30th, 2026"`` (the SDK table's format) or ISO ``2026-11-30``."""
    cleaned = _ORDINAL.sub(r"\1", text.strip())
    for fmt in ("%B %d, %Y", "%b %d, %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    return None


def sdk_deprecations() -> dict[str, str]:
    """The installed SDK's deprecation table (model -> end-of-life text)."""
    try:
        from anthropic._data.deprecated_models import DEPRECATED_MODELS
    except ImportError:  # pragma: no cover - older/newer SDK layout
        return {}
    return dict(DEPRECATED_MODELS)


def sdk_models() -> list[str]:
    """Model ids named by the installed SDK's ``anthropic.types.Model``, newest first."""
    names: list[str] = []

    def walk(tp: Any) -> None:
        for arg in typing.get_args(tp):
            if isinstance(arg, str):
                names.append(arg)
            else:
                walk(arg)

    walk(anthropic.types.Model)
    return list(dict.fromkeys(names))


def newest_active_model(
    family: str = "sonnet", table: Mapping[str, str] | None = None
) -> str | None:
    """The first (newest) model of ``family`` in the SDK's model list that is not in the
    deprecation table."""
    deprecated = sdk_deprecations() if table is None else table
    for name in sdk_models():
        if f"-{family}-" in f"{name}-" and name not in deprecated:
            return name
    return None


def deprecation_warnings(
    models: Sequence[str], today: date, table: Mapping[str, str] | None = None
) -> list[str]:
    """One warning per configured model that the SDK's deprecation table lists, naming its
    end-of-life date (ISO) and how far away it is. ``table`` defaults to the SDK's."""
    deprecations = sdk_deprecations() if table is None else table
    warnings: list[str] = []
    for model in dict.fromkeys(models):
        if model not in deprecations:
            continue
        raw = deprecations[model]
        eol = parse_sdk_date(raw)
        if eol is None:
            warnings.append(f"model {model} is deprecated; end-of-life: {raw}")
        elif eol <= today:
            warnings.append(
                f"model {model} reached end-of-life on {eol.isoformat()}; requests will fail, "
                "the next model in the list will be used"
            )
        else:
            days = (eol - today).days
            warnings.append(
                f"model {model} is deprecated and reaches end-of-life on {eol.isoformat()} "
                f"(in {days} days); pin a newer model before then"
            )
    return warnings
