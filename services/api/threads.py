"""/v1/threads: list, read with messages, delete."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint

from services.api.common import caller, query_int, query_text, runtime, thread_json

bp = Blueprint("threads", __name__)


@bp.get("/v1/threads")
def list_threads():
    threads = runtime().threads.list(
        caller().user_id,
        limit=query_int("limit", 50, 1, 200),
        before=query_text("before", None, 64),
    )
    return {"items": [thread_json(t) for t in threads]}


@bp.get("/v1/threads/<thread_id>")
def read_thread(thread_id: str):
    store = runtime().threads
    user_id = caller().user_id
    messages = store.load(user_id, thread_id, last_n=query_int("limit", 100, 1, 200))
    return {
        "thread": thread_json(store.get(user_id, thread_id)),
        "messages": [asdict(m) for m in messages],
    }


@bp.delete("/v1/threads/<thread_id>")
def delete_thread(thread_id: str):
    """204 when gone everywhere; 202 when only its Redis copy is left, which is deleted
    in the background as soon as Redis is back (the thread itself is already gone)."""
    if runtime().threads.delete(caller().user_id, thread_id):
        return "", 204
    return {"thread_id": thread_id, "status": "pending", "pending": ["redis"]}, 202
