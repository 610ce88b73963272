"""The OpenAI-compatible chat API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Owns the translation between OpenAI's request and response shapes and one agent turn:
which request parameters are used, ignored or refused, how a conversation the client
sends is reconciled with the stored thread, the thread id going out and coming back, how
a turn that went wrong ends (never as a silent ``"stop"``), and OpenAI's error shape for
every error on these routes.

Conversations. The thread id goes out in the ``X-Thread-Id`` header and a ``thread_id``
field of the body (and of every stream chunk), and comes back in ``X-Thread-Id`` or
``metadata.thread_id``. Clients that send the whole conversation each time (Open WebUI,
LibreChat) get it used: ``system``/``developer`` messages become the client's
instructions, and the earlier messages are compared with the stored thread. When the
thread's recent turns are the tail of what the client sent, the stored thread (with its
tool calls) is the prompt's history; when they differ (an edited or regenerated message)
the client's copy is. A client that never sends the thread id back is matched to the
user's recently active thread holding exactly the conversation it sent, if there is one.
Either way only the new, last user message and the answer are appended to the thread:
the thread is the record of the turns this service answered, never a second copy of the
client's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request

from services.agent import TurnError, TurnEvent, TurnFinished, TurnStarted
from services.api.chat import close_events, observed, run_to_end, sse_response
from services.api.common import body, caller, request_id, runtime
from services.api.openapi import THREAD_HEADER
from services.errors import InvalidInput, NotFound
from services.runtime import Runtime
from services.threads import ChatMessage, check_thread_id

bp = Blueprint("completions", __name__)

MODEL_ID = "memory-agent"
MAX_INSTRUCTIONS_CHARS = 8000
RECENT_THREADS = 5  # how many of the user's latest threads a sent conversation is matched to

# Parameters that would change what the answer is, which this agent cannot honour: each
# gets a 400 saying why instead of an answer that silently ignored it. The value is what
# may be sent anyway because it asks for nothing (null, an empty list, the default).
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((None, 1), "n must be 1: one answer per request"),
    "tools": ((None, []), "tools are not supported: the agent calls only its memory tools"),
    "functions": ((None, []), "functions are not supported: the agent answers in text"),
    "tool_choice": ((None, "none", "auto"), "tool_choice is not supported (no client tools)"),
    "function_call": ((None, "none", "auto"), "function_call is not supported"),
    "response_format": ((None, {"type": "text"}), "only text answers are supported"),
    "logprobs": ((None, False), "logprobs are not available"),
    "top_logprobs": ((None, 0), "logprobs are not available"),
    "audio": ((None,), "audio output is not supported"),
    "modalities": ((None, ["text"]), "only the text modality is supported"),
    "prediction": ((None,), "predicted outputs are not supported"),
    "web_search_options": ((None,), "web search is not supported"),
    "moderation": ((None,), "moderation options are not supported"),
}


class Unsupported(InvalidInput):
    code = "unsupported_parameter"


@dataclass(frozen=True)
class Conversation:
    """What the client sent, split the way the agent uses it."""

    instructions: str
    earlier: list[ChatMessage]
    message: str


# ---- errors in OpenAI's shape -------------------------------------------------------------


@bp.after_request
def openai_error_shape(response: Response) -> Response:
    """Every error on these routes (auth, limits, validation, outages) in OpenAI's shape
    ``{"error": {"message", "type", "param", "code"}}``, which its clients parse."""
    if response.status_code < 400 or not response.is_json:
        return response
    error = (response.get_json(silent=True) or {}).get("error")
    if not isinstance(error, dict) or "type" in error:
        return response
    response.set_data(json.dumps({"error": openai_error(response.status_code, error)}))
    return response


def openai_error(status: int, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": error.get("message", ""),
        "type": "invalid_request_error" if status < 500 else "server_error",
        "param": error.get("field"),
        "code": error.get("code"),
    }


# ---- routes -------------------------------------------------------------------------------


@bp.get("/v1/models")
def models():
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "memory-agent"}],
    }


@bp.post("/v1/chat/completions")
def chat_completions():
    raw = request.get_json(silent=True)
    if isinstance(raw, dict):
        refuse_unsupported(raw)
    data = body("ChatCompletionRequest")
    conversation = split_messages(data["messages"])
    user_id = caller().user_id
    rt = runtime()
    thread_id, history = thread_and_history(
        rt, user_id, requested_thread(data), conversation.earlier
    )
    events = observed(
        rt.agent.run_turn(
            user_id,
            thread_id,
            conversation.message,
            request_id=request_id(),
            history=history,
            instructions=conversation.instructions,
        )
    )
    seen: list[TurnEvent] = []
    events = run_to_end(events, seen)
    started = next(events)  # after retrieval: a failure there is still an HTTP error
    assert isinstance(started, TurnStarted)
    completion = Completion(
        f"chatcmpl-{request_id() or int(time.time() * 1000)}", int(time.time()), started.thread_id
    )
    if data.get("stream"):
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        response = sse_response(completion.frames(events, include_usage))
    else:
        response = completion.reply(list(events))
    response.headers[THREAD_HEADER] = started.thread_id
    return response


# ---- the request --------------------------------------------------------------------------


def refuse_unsupported(data: dict[str, Any]) -> None:
    for name, (harmless, reason) in UNSUPPORTED.items():
        if name in data and data[name] not in harmless:
            raise Unsupported(reason, name)


def requested_thread(data: dict[str, Any]) -> str | None:
    header = request.headers.get(THREAD_HEADER) or None
    metadata = (data.get("metadata") or {}).get("thread_id") or None
    if header and metadata and header != metadata:
        raise InvalidInput(
            f"{THREAD_HEADER} and metadata.thread_id name different threads", "metadata"
        )
    chosen = header or metadata
    return None if chosen is None else check_thread_id(chosen)


def split_messages(messages: list[dict[str, Any]]) -> Conversation:
    """System/developer messages are the client's instructions; the last message must be
    the user's (the turn); the others are the conversation so far."""
    instructions: list[str] = []
    turns: list[ChatMessage] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message["role"]
        if role == "tool" or message.get("tool_calls") or message.get("function_call"):
            raise Unsupported(f"{where}: tool calls and results are not supported", where)
        text = message_text(message, where)
        if role in ("system", "developer"):
            instructions.append(text)
        elif role in ("user", "assistant"):
            turns.append(ChatMessage(role, text))
    if not turns or turns[-1].role != "user":
        raise InvalidInput(
            "the last message (after any system messages) must be the user's", "messages"
        )
    joined = "\n\n".join(part for part in instructions if part.strip())
    if len(joined) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidInput(
            f"the system messages are longer than {MAX_INSTRUCTIONS_CHARS} characters", "messages"
        )
    return Conversation(joined, turns[:-1], turns[-1].content)


def message_text(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        if not (
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ):
            raise Unsupported(
                f"{where}.content[{index}]: only text parts are supported (type text, with text)",
                f"{where}.content",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def continues(stored: list[ChatMessage], earlier: list[ChatMessage]) -> bool:
    """Whether the stored thread's recent turns are the tail of the client's copy: then
    the client's copy holds nothing the stored thread does not."""
    mine = visible_turns(stored)
    if not mine or len(mine) > len(earlier):
        return False
    theirs = [(m.role, m.content.strip()) for m in earlier[-len(mine) :]]
    return theirs == mine


def thread_and_history(
    rt: Runtime, user_id: str, thread_id: str | None, earlier: list[ChatMessage]
) -> tuple[str | None, list[ChatMessage] | None]:
    """The thread this turn goes in, and the history for the prompt when it is the
    client's copy rather than the stored thread's (None)."""
    if not earlier:
        return thread_id, None
    if thread_id is None:
        found = find_thread(rt, user_id, earlier)
        return found, None if found else earlier
    stored = rt.threads.load(user_id, thread_id, rt.agent.config.history_messages)
    return thread_id, None if continues(stored, earlier) else earlier


def find_thread(rt: Runtime, user_id: str, earlier: list[ChatMessage]) -> str | None:
    """For a client that sends the whole conversation but never the thread id back: the
    user's recently active thread whose stored conversation is exactly what was sent (or,
    for a thread longer than the history window, ends with it)."""
    window = rt.agent.config.history_messages
    sent = [(m.role, m.content.strip()) for m in earlier]
    for thread in rt.threads.list(user_id, limit=RECENT_THREADS):
        try:
            stored = rt.threads.load(user_id, thread.thread_id, window)
        except NotFound:  # deleted meanwhile
            continue
        whole = thread.message_count <= len(stored)
        if visible_turns(stored) == sent if whole else continues(stored, earlier):
            return thread.thread_id
    return None


def visible_turns(stored: list[ChatMessage]) -> list[tuple[str, str]]:
    """The stored messages as an OpenAI client saw them: from the first user message, tool
    results left out, and each answer's text (all its steps) as one assistant message."""
    turns: list[tuple[str, str]] = []
    for message in stored:
        if message.role == "user":
            turns.append(("user", message.content.strip()))
        elif message.role == "assistant" and turns:
            if turns[-1][0] == "assistant":
                turns[-1] = ("assistant", turns[-1][1] + message.content)
            else:
                turns.append(("assistant", message.content))
    return [(role, text.strip()) for role, text in turns if role == "user" or text.strip()]


# ---- the response -------------------------------------------------------------------------

# A turn that went wrong part-way: the HTTP status without streaming, and whether the
# client may simply send it again. It may not: the turn is stored (what was said) and its
# memory writes are done, so a blind retry would store the message twice.
TURN_ERROR_STATUS = {
    "llm_stream_interrupted": 502,
    "llm_unavailable": 503,
    "persistence_failed": 503,
}


@dataclass(frozen=True)
class Completion:
    id: str
    created: int
    thread_id: str

    def reply(self, events: list[TurnEvent]) -> Response:
        final = _final(events)
        error = _error(events)
        if error is not None:
            status = TURN_ERROR_STATUS[error.code]
            response = Response(
                json.dumps({"error": self.error_object(error)}),
                status=status,
                mimetype="application/json",
            )
            response.headers["x-should-retry"] = "false"
            if status == 503:
                response.headers["Retry-After"] = "5"
            return response
        payload = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": MODEL_ID,
            "system_fingerprint": None,
            "thread_id": self.thread_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": final.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason(final),
                }
            ],
            "usage": openai_usage(final),
        }
        return Response(json.dumps(payload, ensure_ascii=False), mimetype="application/json")

    def frames(self, events: Iterator[TurnEvent], include_usage: bool) -> Iterator[str]:
        try:
            yield self.chunk(self.choice({"role": "assistant", "content": ""}))
            error: TurnError | None = None
            for event in events:
                if event.type == "text":
                    yield self.chunk(self.choice({"content": event.text}))  # type: ignore[union-attr]
                elif isinstance(event, TurnError):
                    error = event
                elif isinstance(event, TurnFinished):
                    usage = {"usage": openai_usage(event)} if include_usage else {}
                    if error is not None:
                        # One chunk both kinds of client understand: OpenAI's SDKs raise
                        # APIError on an "error" field; a client that only reads choices
                        # still sees an answer marked as incomplete, not a clean "stop".
                        yield self.chunk(
                            self.choice({}, finish_reason(event)),
                            error=self.error_object(error),
                            **usage,
                        )
                    else:
                        yield self.chunk(self.choice({}, finish_reason(event)))
                        if usage:  # OpenAI sends usage in a last chunk without choices
                            yield self.chunk([], **usage)
            yield "data: [DONE]\n\n"
        finally:
            close_events(events)

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": MODEL_ID,
            "system_fingerprint": None,
            "thread_id": self.thread_id,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    @staticmethod
    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    def error_object(self, error: TurnError) -> dict[str, Any]:
        saved = (
            ""
            if error.code == "persistence_failed"
            else f" (what was said is in thread {self.thread_id})"
        )
        return {
            "message": error.message + saved,
            "type": "server_error",
            "param": None,
            "code": error.code,
        }


def _final(events: list[TurnEvent]) -> TurnFinished:
    final = events[-1]
    assert isinstance(final, TurnFinished)
    return final


def _error(events: list[TurnEvent]) -> TurnError | None:
    return next((event for event in events if isinstance(event, TurnError)), None)


def finish_reason(final: TurnFinished) -> str:
    """OpenAI has no word for "cut off by a failure": ``length`` (the answer is incomplete)
    is the nearest, so an answer that broke off never looks finished."""
    return "length" if final.finish_reason in ("max_tokens", "error") else "stop"


def openai_usage(final: TurnFinished) -> dict[str, Any]:
    usage = final.usage
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }
