"""/v1/memories: list, search, create, read, update, delete, history, restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from flask import Blueprint, request

from services.api.common import (
    body,
    caller,
    event_json,
    memory_json,
    query_int,
    query_json_object,
    query_number,
    query_text,
    request_id,
    runtime,
)
from services.errors import InvalidInput
from services.limits import MAX_CURSOR_CHARS, MAX_ID_CHARS, MAX_PAGE_LIMIT
from services.memories.records import DEFAULT_NAMESPACE, Kind
from services.memories.validation import check_kind, check_time
from services.retrieval import retrieve

bp = Blueprint("memories", __name__)


@bp.get("/v1/memories")
def list_memories():
    page = runtime().memories.list(
        caller().user_id,
        namespace=query_text("namespace", DEFAULT_NAMESPACE, MAX_ID_CHARS),
        limit=query_int("limit", 50, 1, MAX_PAGE_LIMIT),
        cursor=query_text("cursor", None, MAX_CURSOR_CHARS),
        kind=query_kind("fact"),
    )
    return {"items": [memory_json(m) for m in page.items], "next_cursor": page.next_cursor}


@bp.get("/v1/memories/search")
def search_memories():
    query = query_text("q")
    if not query:
        raise InvalidInput("q is required", "q")
    mode = query_text("mode", None, 16)
    kind = query_kind(None)
    arguments = dict(
        namespace=query_text("namespace", DEFAULT_NAMESPACE, MAX_ID_CHARS),
        limit=query_int("limit", 10, 1, MAX_PAGE_LIMIT),
        metadata_filter=query_json_object("filter"),
        kind=kind,
    )
    rt = runtime()
    min_score = query_number("min_score", 0.0, 0.0, 1.0)
    if mode is None:  # the retrieval pipeline: what the agent sees
        hits = retrieve(rt.memories, caller().user_id, query, min_score=min_score, **arguments).hits
    elif mode in ("hybrid", "vector", "lexical"):  # one raw store ranking
        hits = rt.memories.search(caller().user_id, query, mode=mode, **arguments)  # type: ignore[arg-type]
        hits = [hit for hit in hits if hit.score >= min_score]
    else:
        raise InvalidInput("mode must be hybrid, vector or lexical (or absent)", "mode")
    return {
        "items": [
            {
                "memory": memory_json(hit.memory),
                "score": hit.score,
                "similarity": hit.similarity,
                "vector_rank": hit.vector_rank,
                "lexical_rank": hit.lexical_rank,
            }
            for hit in hits
        ]
    }


def query_kind(default: str | None) -> Kind | None:
    """``kind`` as a query parameter: fact, episode or all (None)."""
    value = query_text("kind", default, 16)
    if value is None or value == "all":
        return None
    return check_kind(value)


@bp.post("/v1/memories")
def create_memory():
    data = body("MemoryCreate")
    written = runtime().memories.upsert(
        caller().user_id,
        data["content"],
        key=data.get("key"),
        namespace=data.get("namespace", DEFAULT_NAMESPACE),
        context=data.get("context"),
        metadata=data.get("metadata"),
        importance=data.get("importance"),
        observed_at=data.get("observed_at"),
        expires_at=future(data.get("expires_at")),
        kind=data.get("kind", "fact"),
        request_id=request_id(),
    )
    return memory_json(written.memory), 201 if written.op == "ADD" else 200


@bp.get("/v1/memories/<uuid:memory_id>")
def read_memory(memory_id: UUID):
    memory = runtime().memories.get(caller().user_id, str(memory_id))
    data = memory_json(memory)
    if memory.id != str(memory_id):  # merged into a memory that says the same thing
        data["merged_into"] = memory.id
    return data


@bp.patch("/v1/memories/<uuid:memory_id>")
def update_memory(memory_id: UUID):
    data = body("MemoryUpdate")
    written = runtime().memories.upsert(
        caller().user_id,
        data["content"],
        memory_id=str(memory_id),
        context=data.get("context"),
        metadata=data.get("metadata"),
        importance=data.get("importance"),
        observed_at=data.get("observed_at"),
        expires_at=future(data.get("expires_at")),
        expected_version=data.get("version"),
        request_id=request_id(),
    )
    return memory_json(written.memory)


@bp.delete("/v1/memories/<uuid:memory_id>")
def delete_memory(memory_id: UUID):
    version = request.args.get("version")
    runtime().memories.delete(
        caller().user_id,
        str(memory_id),
        expected_version=query_int("version", 0, 1, 2**31 - 1) if version else None,
        request_id=request_id(),
    )
    return "", 204


@bp.get("/v1/memories/<uuid:memory_id>/history")
def memory_history(memory_id: UUID):
    events = runtime().memories.history(caller().user_id, str(memory_id))
    return {"items": [event_json(event) for event in events]}


@bp.post("/v1/memories/restore")
def restore_memories():
    data = body("RestoreRequest")
    rt = runtime()
    user_id = caller().user_id
    result = rt.account.restore(user_id, data.get("memory_ids"), request_id())
    return {
        "restored": [memory_json(rt.memories.get(user_id, i)) for i in result.restored],
        "conflicts": result.conflicts,
        "missing": result.missing,
    }


MIN_LIFETIME = timedelta(minutes=1)


def future(value: str | None) -> datetime | None:
    """An expiry from a client must leave the memory alive for at least a minute: one that
    is gone before the response arrives is almost certainly a clock or unit mistake."""
    expires_at = check_time(value, "expires_at")
    if expires_at is not None and expires_at < datetime.now(UTC) + MIN_LIFETIME:
        raise InvalidInput("expires_at must be at least a minute in the future", "expires_at")
    return expires_at
