"""The OpenAPI 3.1 document of the HTTP API, and the request schemas the handlers enforce.

One source: ``validate_body`` checks request bodies against the same component schemas
that ``/openapi.json`` publishes, so the document cannot drift from what is enforced.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from services.api.docs import ASSETS as DOCS_ASSETS
from services.errors import InvalidInput
from services.limits import (
    MAX_CHAT_MESSAGE_CHARS,
    MAX_CONTENT_CHARS,
    MAX_CURSOR_CHARS,
    MAX_ID_CHARS,
    MAX_JSON_ITEMS,
    MAX_PAGE_LIMIT,
    MAX_THREAD_MESSAGE_CHARS,
    THREAD_ID_PATTERN,
)

# The patterns say what the store enforces: no NUL in text, no control characters in ids,
# and something other than whitespace in whatever must not be empty. Only whitespace may
# come before the first other character, so a match is linear in the length: with
# "anything, then a non-space" a 32,000-character value ending in NUL backtracked for
# seconds (and a megabyte one for hours) inside the schema check.
NOT_BLANK = "^\\s*[^\\s\\u0000][^\\u0000]*$"
NO_NUL = "^[^\\u0000]*$"
ID_CHARS = "^[^\\S\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$"
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_CONTENT_CHARS, "pattern": NOT_BLANK}
CONTEXT = {"type": "string", "maxLength": MAX_CONTENT_CHARS, "pattern": NO_NUL}
ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": ID_CHARS}
TIME = {"type": "string", "format": "date-time"}
KIND = {"type": "string", "enum": ["fact", "episode"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
METADATA = {
    "type": "object",
    "maxProperties": MAX_JSON_ITEMS,
    "propertyNames": {"maxLength": MAX_ID_CHARS, "pattern": NO_NUL},
    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "JsonValue": {
        "description": "Any JSON value without NUL characters (PostgreSQL jsonb refuses them)",
        "anyOf": [
            {"type": ["number", "boolean", "null"]},
            {"type": "string", "maxLength": MAX_CONTENT_CHARS, "pattern": NO_NUL},
            {
                "type": "array",
                "maxItems": MAX_JSON_ITEMS,
                "items": {"$ref": "#/components/schemas/JsonValue"},
            },
            {
                "type": "object",
                "maxProperties": MAX_JSON_ITEMS,
                "propertyNames": {"maxLength": MAX_ID_CHARS, "pattern": NO_NUL},
                "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
            },
        ],
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            }
        },
    },
    "Memory": {
        "type": "object",
        "description": (
            "A fact (what the agent or a client chose to remember) or an episode (a turn "
            "of a conversation). Conversation turns may carry metadata.speaker, "
            "metadata.session and metadata.position: the search uses them."
        ),
        "required": ["id", "key", "namespace", "content", "version", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "key": {"type": "string"},
            "namespace": {"type": "string"},
            "content": {"type": "string"},
            "context": {"type": "string"},
            "metadata": {"type": "object"},
            "importance": {"type": "number"},
            "embedded": {"type": "boolean"},
            "observed_at": TIME,
            "created_at": TIME,
            "updated_at": TIME,
            "last_accessed_at": NULLABLE_TIME,
            "access_count": {"type": "integer"},
            "expires_at": NULLABLE_TIME,
            "version": {"type": "integer"},
            "kind": KIND,
            "merged_into": {
                "type": "string",
                "format": "uuid",
                "description": "Set when the id asked for was merged into this memory",
            },
        },
    },
    "MemoryCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["content"],
        "properties": {
            "content": TEXT,
            "context": CONTEXT,
            "key": ID,
            "namespace": ID,
            "metadata": METADATA,
            "importance": {"type": "number", "minimum": 0, "maximum": 1},
            "observed_at": TIME,
            "expires_at": TIME,
            "kind": KIND,
        },
    },
    "MemoryUpdate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["content"],
        "properties": {
            "content": TEXT,
            "context": CONTEXT,
            "metadata": METADATA,
            "importance": {"type": "number", "minimum": 0, "maximum": 1},
            "observed_at": TIME,
            "expires_at": TIME,
            "version": {"type": "integer", "minimum": 1, "maximum": 2147483647},
        },
    },
    "MemoryPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Memory"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "SearchResults": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["memory", "score"],
                    "properties": {
                        "memory": {"$ref": "#/components/schemas/Memory"},
                        "score": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "description": (
                                "Relevance from 0 to 1: 1 is first in every ranking, 0.5 "
                                "first in one of two"
                            ),
                        },
                        "similarity": {"type": ["number", "null"]},
                        "vector_rank": {"type": ["integer", "null"]},
                        "lexical_rank": {"type": ["integer", "null"]},
                    },
                },
            }
        },
    },
    "MemoryEvent": {
        "type": "object",
        "required": ["op", "version", "created_at"],
        "properties": {
            "op": {"type": "string", "enum": ["ADD", "UPDATE", "DELETE", "MERGED"]},
            "old_content": {"type": ["string", "null"]},
            "new_content": {"type": ["string", "null"]},
            "old_context": {"type": ["string", "null"]},
            "new_context": {"type": ["string", "null"]},
            "version": {"type": "integer"},
            "actor": {"type": "string"},
            "request_id": {"type": ["string", "null"]},
            "superseded_at": NULLABLE_TIME,
            "merged_into": {"type": ["string", "null"]},
            "created_at": TIME,
        },
    },
    "History": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/MemoryEvent"}}
        },
    },
    "Thread": {
        "type": "object",
        "required": ["thread_id", "title", "message_count", "created_at", "updated_at"],
        "properties": {
            "thread_id": {"type": "string"},
            "title": {"type": "string"},
            "message_count": {"type": "integer"},
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "ThreadList": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Thread"}}
        },
    },
    "ThreadMessages": {
        "type": "object",
        "required": ["thread", "messages"],
        "properties": {
            "thread": {"$ref": "#/components/schemas/Thread"},
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["role", "content", "seq"],
                    "properties": {
                        "role": {"type": "string"},
                        "content": {"type": "string"},
                        "tool_calls": {"type": ["array", "null"]},
                        "tool_call_id": {"type": ["string", "null"]},
                        "input_tokens": {"type": "integer"},
                        "output_tokens": {"type": "integer"},
                        "seq": {"type": "integer"},
                        "created_at": {"type": "string"},
                    },
                },
            },
        },
    },
    "ChatRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_CHAT_MESSAGE_CHARS,
                "pattern": NOT_BLANK,
            },
            "thread_id": {"type": "string", "pattern": THREAD_ID_PATTERN},
            "stream": {"type": "boolean"},
        },
    },
    "ChatResponse": {
        "type": "object",
        "required": ["thread_id", "text", "memory_events", "final"],
        "properties": {
            "thread_id": {"type": "string"},
            "text": {"type": "string"},
            "memory_events": {"type": "array", "items": {"type": "object"}},
            "errors": {"type": "array", "items": {"type": "object"}},
            "final": {"type": "object"},
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["messages"],
        "description": (
            "OpenAI's request, as far as it applies to an agent with its own model chain. "
            "Used: messages (system/developer messages are the client's instructions, at most "
            "8000 characters together; the last message must be the user's: it is the turn; "
            "the earlier ones are the conversation so far), stream, "
            "stream_options.include_usage, metadata.thread_id. Accepted and ignored (the "
            "deployment's model chain and settings answer): model, temperature, top_p, "
            "max_tokens, max_completion_tokens, presence_penalty, frequency_penalty, seed, "
            "stop, logit_bias, user, store, service_tier, reasoning_effort, verbosity, "
            "parallel_tool_calls, prompt_cache_key, prompt_cache_options, "
            "prompt_cache_retention, safety_identifier, and the other metadata keys. Refused "
            "with 400 (code unsupported_parameter): n other than 1, tools, functions, "
            "tool_choice/function_call other than none/auto, response_format other than "
            "text, logprobs, top_logprobs, audio, modalities other than text, prediction, "
            "web_search_options, moderation, tool messages, assistant tool calls and "
            "non-text content parts. Any other field is refused as unknown."
        ),
        "properties": {
            "model": {"type": "string", "description": "Ignored; the response says memory-agent"},
            "messages": {
                "type": "array",
                "minItems": 1,
                # No maxItems: clients send whole conversations; the body limit bounds them
                # and the prompt takes the last AGENT_HISTORY_MESSAGES.
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {
                            "type": "string",
                            "enum": ["system", "developer", "user", "assistant", "tool"],
                        },
                        "content": {
                            "type": ["string", "array", "null"],
                            "maxLength": MAX_THREAD_MESSAGE_CHARS,
                        },
                    },
                    # Every user message needs text (the last one is the turn).
                    "if": {"properties": {"role": {"const": "user"}}},
                    "then": {
                        "required": ["content"],
                        "properties": {
                            "content": {
                                "anyOf": [
                                    {
                                        "type": "string",
                                        "maxLength": MAX_CHAT_MESSAGE_CHARS,
                                        "pattern": NOT_BLANK,
                                    },
                                    {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/ContentPart"},
                                        "contains": {
                                            "type": "object",
                                            "properties": {"type": {"const": "text"}},
                                        },
                                    },
                                ]
                            }
                        },
                    },
                },
                "contains": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {"role": {"const": "user"}},
                },
            },
            "stream": {"type": ["boolean", "null"]},
            "stream_options": {
                "type": ["object", "null"],
                "properties": {"include_usage": {"type": "boolean"}},
            },
            "metadata": {
                "type": ["object", "null"],
                "maxProperties": 16,
                "description": (
                    "thread_id continues that thread (like the X-Thread-Id header). Without "
                    "either, earlier messages that are exactly the stored conversation of one "
                    "of the caller's 5 most recently active threads continue that thread."
                ),
                "properties": {"thread_id": {"type": "string", "pattern": THREAD_ID_PATTERN}},
                "additionalProperties": {"type": "string", "maxLength": 512, "pattern": NO_NUL},
            },
            # Accepted and ignored:
            "temperature": {"type": ["number", "null"]},
            "top_p": {"type": ["number", "null"]},
            "max_tokens": {"type": ["integer", "null"]},
            "max_completion_tokens": {"type": ["integer", "null"]},
            "presence_penalty": {"type": ["number", "null"]},
            "frequency_penalty": {"type": ["number", "null"]},
            "seed": {"type": ["integer", "null"]},
            "stop": {"type": ["string", "array", "null"]},
            "logit_bias": {"type": ["object", "null"]},
            "user": {"type": "string", "description": "Ignored: the caller is the credential"},
            "store": {"type": ["boolean", "null"]},
            "service_tier": {"type": ["string", "null"]},
            "reasoning_effort": {"type": ["string", "null"]},
            "verbosity": {"type": ["string", "null"]},
            "parallel_tool_calls": {"type": "boolean"},
            "prompt_cache_key": {"type": ["string", "null"]},
            "prompt_cache_options": {"type": ["object", "null"]},
            "prompt_cache_retention": {"type": ["string", "null"]},
            "safety_identifier": {"type": ["string", "null"]},
            # Refused unless they ask for nothing:
            "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 1},
            "tools": {"type": ["array", "null"], "maxItems": 0},
            "functions": {"type": ["array", "null"], "maxItems": 0},
            "tool_choice": {"enum": ["none", "auto", None]},
            "function_call": {"enum": ["none", "auto", None]},
            "response_format": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"const": "text"}},
                    },
                ]
            },
            "logprobs": {"enum": [False, None]},
            "top_logprobs": {"enum": [0, None]},
            "modalities": {"type": ["array", "null"], "items": {"const": "text"}},
            "audio": {"type": "null"},
            "prediction": {"type": "null"},
            "web_search_options": {"type": "null"},
            "moderation": {"type": "null"},
        },
    },
    "ContentPart": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string"}},
        "if": {"properties": {"type": {"const": "text"}}},
        "then": {
            "required": ["text"],
            "properties": {
                "text": {
                    "type": "string",
                    "maxLength": MAX_CHAT_MESSAGE_CHARS,
                    "pattern": NOT_BLANK,
                }
            },
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "thread_id"],
        "description": (
            "OpenAI's chat.completion, plus thread_id. With stream true, chat.completion.chunk "
            "events, each with thread_id, ending in data: [DONE]. finish_reason is length "
            "when the answer is incomplete (the token limit, or the model's stream broke: "
            "then that chunk also has an error object, which OpenAI's SDKs raise as "
            "APIError); without streaming such a turn is a 502/503 error instead."
        ),
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"const": "memory-agent"},
            "thread_id": {"type": "string", "description": "Send back to continue the thread"},
            "choices": {"type": "array"},
            "usage": {"type": "object"},
        },
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"enum": ["invalid_request_error", "server_error"]},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array"}},
    },
    "Usage": {
        "type": "object",
        "required": ["items", "total_cost_usd"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["day", "model", "calls", "cost_usd"],
                    "properties": {
                        "day": {"type": "string"},
                        "model": {"type": "string"},
                        "kind": {"type": "string"},
                        "calls": {"type": "integer"},
                        "input_tokens": {"type": "integer"},
                        "output_tokens": {"type": "integer"},
                        "cache_read_tokens": {"type": "integer"},
                        "cache_write_tokens": {"type": "integer"},
                        "cost_usd": {"type": "number"},
                    },
                },
            },
            "total_cost_usd": {"type": "number"},
        },
    },
    "RetentionPolicy": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_age_days": {"type": ["integer", "null"], "minimum": 0, "maximum": 36500},
            "max_count": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000000},
            "importance_floor": {"type": ["number", "null"], "minimum": 0, "maximum": 1.01},
            "archive_after_days": {"type": ["integer", "null"], "minimum": 0, "maximum": 36500},
            "thread_idle_days": {"type": ["integer", "null"], "minimum": 0, "maximum": 36500},
        },
    },
    "RestoreRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "memory_ids": {
                "type": "array",
                "maxItems": 1000,
                "items": {"type": "string", "format": "uuid"},
            }
        },
    },
    "RestoreResult": {
        "type": "object",
        "required": ["restored", "conflicts", "missing"],
        "properties": {
            "restored": {"type": "array", "items": {"$ref": "#/components/schemas/Memory"}},
            "conflicts": {"type": "array", "items": {"type": "string"}},
            "missing": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Object": {"type": "object"},
    "Erasure": {
        "description": "An erasure request: which steps are done and which are still "
        "pending (retried in the background until done)",
        "type": "object",
        "required": ["request_id", "status", "erased", "complete", "pending", "counts"],
        "properties": {
            "request_id": {"type": "string", "format": "uuid"},
            "status": {"enum": ["pending", "done"]},
            "erased": {"type": "boolean"},
            "complete": {"type": "array", "items": {"enum": ["archive", "database", "redis"]}},
            "pending": {"type": "array", "items": {"enum": ["archive", "database", "redis"]}},
            "requested_at": TIME,
            "completed_at": NULLABLE_TIME,
            "attempts": {"type": "integer"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "PendingDeletion": {
        "type": "object",
        "required": ["status", "pending"],
        "properties": {
            "thread_id": {"type": "string"},
            "status": {"const": "pending"},
            "pending": {"type": "array", "items": {"const": "redis"}},
        },
    },
}

ERRORS = {
    "400": "Invalid input",
    "401": "Missing or invalid credential",
    "403": "Credential may not do this",
    "404": "Not found (or not yours)",
    "409": "Version conflict, or an Idempotency-Key reused or still running",
    "413": "Body too large",
    "429": "Rate limited; see Retry-After",
    "502": "The language model's answer broke off (the partial turn is stored)",
    "503": "A dependency is unavailable (code names it, e.g. database_unavailable); "
    "retry after Retry-After seconds",
}


SSE_EVENT = {
    "description": "One Server-Sent Event; data is the JSON of the event (or [DONE])",
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str,
    response: str | None,
    *,
    status: str = "200",
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[str, ...] = ("400", "401", "429"),
    public: bool = False,
    stream: bool = False,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if response is None:
        responses[status] = {"description": summary}
    else:
        content = {"application/json": {"schema": _ref(response)}}
        if stream:  # with "stream": true the same answer comes as Server-Sent Events
            content["text/event-stream"] = {"schema": SSE_EVENT}
        responses[status] = {"description": summary, "content": content}
    for code in errors:
        responses[code] = {
            "description": ERRORS[code],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    if not public:  # anything behind a credential reads the database (the key, at least)
        responses["503"] = {
            "description": ERRORS["503"],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if params:
        operation["parameters"] = params
    if public:
        operation["security"] = []
    return operation


def _accepted(operation: dict[str, Any], description: str, schema: str) -> dict[str, Any]:
    """``operation`` may also answer 202 Accepted: done in part, the rest under way."""
    operation["responses"]["202"] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    return operation


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _completions_op() -> dict[str, Any]:
    thread = {"schema": THREAD_ID_SCHEMA, "description": "The thread this turn is in"}
    operation = _op(
        "OpenAI-compatible chat completion backed by memory; keeps the thread",
        "ChatCompletion",
        body="ChatCompletionRequest",
        errors=("400", "401", "404", "413", "429", "502", "503"),
        stream=True,
        params=[
            {
                "name": THREAD_HEADER,
                "in": "header",
                "required": False,
                "description": "Continue this thread (or send metadata.thread_id)",
                "schema": THREAD_ID_SCHEMA,
            }
        ],
    )
    operation["responses"]["200"]["headers"] = {THREAD_HEADER: thread}
    return operation


def _openai(operation: dict[str, Any]) -> dict[str, Any]:
    """Errors on the OpenAI-compatible routes come in OpenAI's shape."""
    for code, response in operation["responses"].items():
        if code >= "400":
            response["content"] = {"application/json": {"schema": _ref("OpenAIError")}}
    return operation


LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT})
NAMESPACE = _query("namespace", {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS})
MEMORY_ID = _path("memory_id", {"type": "string", "format": "uuid"})
THREAD_ID_SCHEMA = {"type": "string", "pattern": THREAD_ID_PATTERN}
THREAD_HEADER = "X-Thread-Id"
THREAD_ID = _path("thread_id", THREAD_ID_SCHEMA)

PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": _op("The chat page (HTML)", None, errors=(), public=True)},
    "/health": {
        "get": _op("Liveness, for checks through the public URL", "Object", errors=(), public=True)
    },
    "/healthz": {"get": _op("Liveness, for container probes", "Object", errors=(), public=True)},
    "/readyz": {"get": _op("Readiness: database and Redis", "Object", errors=(), public=True)},
    "/openapi.json": {"get": _op("This document", "Object", errors=(), public=True)},
    "/docs": {
        "get": _op("This document as a Swagger UI page (HTML)", None, errors=(), public=True)
    },
    "/docs/assets/{name}": {
        "get": _op(
            "A static file of the /docs page (Swagger UI)",
            None,
            params=[_path("name", {"type": "string", "enum": sorted(DOCS_ASSETS)})],
            errors=("404",),
            public=True,
        )
    },
    "/metrics": {
        "get": _op("Prometheus metrics (service keys)", None, errors=("401", "403", "429"))
    },
    "/v1/chat": {
        "post": _op(
            "One chat turn; Server-Sent Events when stream is true",
            "ChatResponse",
            body="ChatRequest",
            errors=("400", "401", "404", "409", "413", "429"),
            stream=True,
            params=[
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                }
            ],
        )
    },
    "/v1/chat/completions": {"post": _openai(_completions_op())},
    "/v1/models": {
        "get": _openai(_op("Models (OpenAI-compatible)", "ModelList", errors=("401", "429")))
    },
    "/v1/memories": {
        "get": _op(
            "List memories, newest first (facts unless kind says otherwise)",
            "MemoryPage",
            params=[
                LIMIT,
                NAMESPACE,
                _query("cursor", {"type": "string", "maxLength": MAX_CURSOR_CHARS}),
                _query("kind", {"type": "string", "enum": ["fact", "episode", "all"]}),
            ],
        ),
        "post": _op(
            "Create (or update by key) a memory",
            "Memory",
            status="201",
            body="MemoryCreate",
            errors=("400", "401", "404", "409", "413", "429"),
        ),
    },
    "/v1/memories/search": {
        "get": _op(
            "Search: the retrieval pipeline the agent uses, or one raw ranking (mode)",
            "SearchResults",
            params=[
                _query(
                    "q", {"type": "string", "minLength": 1, "maxLength": MAX_CONTENT_CHARS}, True
                ),
                LIMIT,
                NAMESPACE,
                _query("mode", {"type": "string", "enum": ["hybrid", "vector", "lexical"]}),
                _query("min_score", {"type": "number", "minimum": 0, "maximum": 1}),
                _query("kind", {"type": "string", "enum": ["fact", "episode", "all"]}),
                {
                    "name": "filter",
                    "in": "query",
                    "required": False,
                    "description": "Metadata the memories must contain (a JSON object)",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            ],
        )
    },
    "/v1/memories/restore": {
        "post": _op(
            "Restore archived memories (all, or the ids given)",
            "RestoreResult",
            body="RestoreRequest",
            errors=("400", "401", "413", "429"),
        )
    },
    "/v1/memories/{memory_id}": {
        "get": _op("Read a memory", "Memory", params=[MEMORY_ID], errors=("401", "404", "429")),
        "patch": _op(
            "Update a memory (optionally only at a version)",
            "Memory",
            body="MemoryUpdate",
            params=[MEMORY_ID],
            errors=("400", "401", "404", "409", "413", "429"),
        ),
        "delete": _op(
            "Delete a memory",
            None,
            status="204",
            params=[
                MEMORY_ID,
                _query("version", {"type": "integer", "minimum": 1, "maximum": 2147483647}),
            ],
            errors=("400", "401", "404", "409", "429"),
        ),
    },
    "/v1/memories/{memory_id}/history": {
        "get": _op(
            "Every change of a memory", "History", params=[MEMORY_ID], errors=("401", "404", "429")
        )
    },
    "/v1/threads": {
        "get": _op(
            "List threads, most recent first",
            "ThreadList",
            params=[LIMIT, _query("before", THREAD_ID_SCHEMA)],
            errors=("400", "401", "404", "429"),
        )
    },
    "/v1/threads/{thread_id}": {
        "get": _op(
            "A thread and its messages",
            "ThreadMessages",
            params=[THREAD_ID, LIMIT],
            errors=("400", "401", "404", "429"),
        ),
        "delete": _accepted(
            _op(
                "Delete a thread",
                None,
                status="204",
                params=[THREAD_ID],
                errors=("400", "401", "404", "429"),
            ),
            "Deleted; only its Redis copy is left, deleted as soon as Redis is back",
            "PendingDeletion",
        ),
    },
    "/v1/usage": {
        "get": _op(
            "Tokens and cost by day and model",
            "Usage",
            params=[_query("days", {"type": "integer", "minimum": 1, "maximum": 366})],
        )
    },
    "/v1/me/export": {"get": _op("Everything held about the caller", "Object")},
    "/v1/me": {
        "delete": _accepted(
            _op(
                "Erase everything held about the caller (idempotent); 200 when done",
                "Erasure",
                errors=("401", "429"),
            ),
            "Filed and partly done: the pending steps are retried until done; GET the "
            "request (Location) to follow it",
            "Erasure",
        )
    },
    "/v1/me/erasure/{request_id}": {
        "get": _op(
            "The state of one of the caller's erasure requests",
            "Erasure",
            params=[_path("request_id", {"type": "string", "format": "uuid"})],
            errors=("400", "401", "404", "429"),
        )
    },
    "/v1/me/retention": {
        "get": _op("The caller's retention policy", "RetentionPolicy", errors=("401", "429")),
        "put": _op(
            "Override retention settings (null: back to the default)",
            "RetentionPolicy",
            body="RetentionPolicy",
            errors=("400", "401", "413", "429"),
        ),
    },
}


# Groups on the /docs page, by path prefix (first match wins).
TAGS = (
    ("/v1/chat/completions", "OpenAI-compatible"),
    ("/v1/models", "OpenAI-compatible"),
    ("/v1/chat", "Chat"),
    ("/v1/memories", "Memories"),
    ("/v1/threads", "Threads"),
    ("/v1/usage", "You"),
    ("/v1/me", "You"),
)


def _tagged(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path, item in paths.items():
        tag = next((name for prefix, name in TAGS if path.startswith(prefix)), "Service")
        out[path] = {method: {"tags": [tag], **op} for method, op in item.items()}
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Memory Agent",
            "version": "1.0.0",
            "description": "A chat agent with long-term memory per user.",
        },
        # Listed, so the page shows them in this order rather than in order of appearance.
        "tags": [
            {"name": name}
            for name in ("Chat", "OpenAI-compatible", "Memories", "Threads", "You", "Service")
        ],
        "paths": _tagged(PATHS),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (mak_...) or a Firebase/Identity Platform ID token",
                }
            },
        },
        "security": [{"bearer": []}],
    }


@cache
def _validator(name: str) -> Draft202012Validator:
    # A root holding every component, so "#/components/schemas/..." references resolve.
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": SCHEMAS}}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_body(name: str, body: Any) -> dict[str, Any]:
    """``body`` checked against component ``name``; the first problem names its field."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", "body")
    error = next(iter(sorted(_validator(name).iter_errors(body), key=lambda e: e.path)), None)
    if error is None:
        return _whole_numbers(name, body)
    if error.validator == "additionalProperties":
        unknown = sorted(set(body) - set(SCHEMAS[name].get("properties", {})))
        raise InvalidInput(f"unknown field {unknown[0]!r}", unknown[0])
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "body"
        raise InvalidInput(f"{missing} is required", missing)
    field = ".".join(str(part) for part in error.absolute_path) or "body"
    raise InvalidInput(f"{field}: {error.message}", field)


def _whole_numbers(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 3.0 as an integer; hand the code an int for integer fields."""
    properties = SCHEMAS[name].get("properties", {})
    integers = {
        field
        for field, spec in properties.items()
        if "integer"
        in (spec.get("type") if isinstance(spec.get("type"), list) else [spec.get("type")])
    }
    return {
        key: int(value) if key in integers and isinstance(value, float) else value
        for key, value in body.items()
    }
