"""What every API handler needs: the caller, the runtime, the request id, the body, query
parameters, and the JSON form of the store's records.

Handlers reach the database only through the runtime's services, which are bound to the
right pool already (services/runtime.py): no handler names a pool."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app, g, request

from services.api import edge
from services.api.openapi import validate_body
from services.auth import Principal
from services.errors import InvalidInput
from services.limits import MAX_CONTENT_CHARS
from services.memories.records import Memory, MemoryEvent
from services.runtime import Runtime
from services.threads import Thread


def runtime() -> Runtime:
    return current_app.extensions["runtime"]


def caller() -> Principal:
    return g.principal


def request_id() -> str | None:
    """This request's id (the client's X-Request-Id or a new one, see services/app.py)."""
    return request.environ.get("REQUEST_ID")


def body(schema: str) -> dict[str, Any]:
    """The JSON body (parsed and checked by the edge), checked against the named OpenAPI
    schema."""
    if not request.is_json:
        raise InvalidInput("send a JSON body with Content-Type: application/json", "body")
    return validate_body(schema, edge.body())


def query_int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", name) from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", name)
    return value


def query_number(name: str, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number", name) from None
    if not low <= value <= high:  # also refuses nan
        raise InvalidInput(f"{name} must be between {low:g} and {high:g}", name)
    return value


def query_text(
    name: str, default: str | None = None, max_chars: int = MAX_CONTENT_CHARS
) -> str | None:
    value = request.args.get(name, default)
    if value is not None and (len(value) > max_chars or "\x00" in value):
        raise InvalidInput(f"{name} is too long or contains NUL", name)
    return value


def query_json_object(name: str) -> dict[str, Any] | None:
    """A JSON query parameter the edge parsed (the OpenAPI document declares it JSON)."""
    if request.args.get(name) is None:
        return None
    value = edge.query(name)
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", name)
    return value


def memory_json(memory: Memory) -> dict[str, Any]:
    return _fields(memory, omit=("user_id",))


def event_json(event: MemoryEvent) -> dict[str, Any]:
    return _fields(event, omit=("id", "memory_id"))


def thread_json(thread: Thread) -> dict[str, Any]:
    return _fields(thread, omit=("user_id",))


def _fields(record: Any, omit: tuple[str, ...]) -> dict[str, Any]:
    """A flat record's fields as JSON values. Not ``dataclasses.asdict``: it deep-copies
    every value (a memory's metadata included), which was a sixth of a search request's
    CPU, and these records are read, not changed."""
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in vars(record).items()
        if k not in omit
    }
