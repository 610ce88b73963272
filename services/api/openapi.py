"""The OpenAPI 3.1 document of the HTTP API, and the request schemas the handlers enforce.

One source: ``validate_body`` checks request bodies against the same component schemas
that ``/openapi.json`` publishes, so the document cannot drift from what is enforced.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from services.errors import InvalidInput

# The patterns say what the store enforces: no NUL in text, no control characters in ids,
# and something other than whitespace in whatever must not be empty. Only whitespace may
# come before the first other character, so a match is linear in the length: with
# "anything, then a non-space" a 32,000-character value ending in NUL backtracked for
# seconds (and a megabyte one for hours) inside the schema check.
NOT_BLANK = "^\\s*[^\\s\\u0000][^\\u0000]*$"
NO_NUL = "^[^\\u0000]*$"
ID_CHARS = "^[^\\S\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$"
TEXT = {"type": "string", "minLength": 1, "maxLength": 4000, "pattern": NOT_BLANK}
CONTEXT = {"type": "string", "maxLength": 4000, "pattern": NO_NUL}
ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": ID_CHARS}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
METADATA = {
    "type": "object",
    "maxProperties": 64,
    "propertyNames": {"maxLength": 256, "pattern": NO_NUL},
    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "JsonValue": {
        "description": "Any JSON value without NUL characters (PostgreSQL jsonb refuses them)",
        "anyOf": [
            {"type": ["number", "boolean", "null"]},
            {"type": "string", "maxLength": 4000, "pattern": NO_NUL},
            {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/JsonValue"}},
            {
                "type": "object",
                "maxProperties": 64,
                "propertyNames": {"maxLength": 256, "pattern": NO_NUL},
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
                        "score": {"type": "number"},
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
            "message": {"type": "string", "minLength": 1, "maxLength": 32000, "pattern": NOT_BLANK},
            "thread_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
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
        "required": ["messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {
                            "type": "string",
                            "enum": ["system", "developer", "user", "assistant", "tool"],
                        },
                        "content": {"type": ["string", "array", "null"]},
                    },
                    # The turn is the last user message, so each user message needs text.
                    "if": {"properties": {"role": {"const": "user"}}},
                    "then": {
                        "required": ["content"],
                        "properties": {
                            "content": {
                                "anyOf": [
                                    {"type": "string", "maxLength": 32000, "pattern": NOT_BLANK},
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
            "stream": {"type": "boolean"},
            "user": {"type": "string"},
        },
    },
    "ContentPart": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string"}},
        "if": {"properties": {"type": {"const": "text"}}},
        "then": {
            "required": ["text"],
            "properties": {"text": {"type": "string", "maxLength": 32000, "pattern": NOT_BLANK}},
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array"},
            "usage": {"type": "object"},
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
}

ERRORS = {
    "400": "Invalid input",
    "401": "Missing or invalid credential",
    "403": "Credential may not do this",
    "404": "Not found (or not yours)",
    "409": "Version conflict, or an Idempotency-Key reused or still running",
    "413": "Body too large",
    "429": "Rate limited; see Retry-After",
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


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200})
NAMESPACE = _query("namespace", {"type": "string", "minLength": 1, "maxLength": 256})
MEMORY_ID = _path("memory_id", {"type": "string", "format": "uuid"})
THREAD_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
THREAD_ID = _path("thread_id", THREAD_ID_SCHEMA)

PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": _op("The chat page (HTML)", None, errors=(), public=True)},
    "/healthz": {"get": _op("Liveness", "Object", errors=(), public=True)},
    "/readyz": {"get": _op("Readiness: database and Redis", "Object", errors=(), public=True)},
    "/openapi.json": {"get": _op("This document", "Object", errors=(), public=True)},
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
    "/v1/chat/completions": {
        "post": _op(
            "OpenAI-compatible chat completion backed by memory",
            "ChatCompletion",
            body="ChatCompletionRequest",
            errors=("400", "401", "404", "413", "429"),
            stream=True,
        )
    },
    "/v1/models": {"get": _op("Models (OpenAI-compatible)", "ModelList", errors=("401", "429"))},
    "/v1/memories": {
        "get": _op(
            "List memories, newest first",
            "MemoryPage",
            params=[LIMIT, NAMESPACE, _query("cursor", {"type": "string", "maxLength": 512})],
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
            "Hybrid (semantic + lexical) search",
            "SearchResults",
            params=[
                _query("q", {"type": "string", "minLength": 1, "maxLength": 4000}, True),
                LIMIT,
                NAMESPACE,
                _query("mode", {"type": "string", "enum": ["hybrid", "vector", "lexical"]}),
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
        "delete": _op(
            "Delete a thread",
            None,
            status="204",
            params=[THREAD_ID],
            errors=("400", "401", "404", "429"),
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
        "delete": _op(
            "Erase everything held about the caller (idempotent)", "Object", errors=("401", "429")
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


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Memory Agent",
            "version": "1.0.0",
            "description": "A chat agent with long-term memory per user.",
        },
        "paths": PATHS,
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
