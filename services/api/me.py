"""/v1/me and /v1/usage: the caller's own data as a whole: usage and cost, export,
erasure, and retention settings."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint

from services.api.common import body, caller, query_int, runtime
from services.privacy import DeletionRequest

bp = Blueprint("me", __name__)


@bp.get("/v1/usage")
def usage():
    until = datetime.now(UTC)
    since = until - timedelta(days=query_int("days", 30, 1, 366))
    report = runtime().account.usage(caller().user_id, since, until)
    items = [
        {
            "day": row.key[0],
            "model": row.key[1],
            "calls": row.calls,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cache_read_tokens": row.cache_read_tokens,
            "cache_write_tokens": row.cache_write_tokens,
            "cost_usd": round(row.cost_usd, 8),
        }
        for row in report.by_day_model
    ]
    return {"items": items, "total_cost_usd": round(report.turns.total_usd, 8)}


@bp.get("/v1/me/export")
def export():
    return runtime().account.export(caller().user_id)


@bp.delete("/v1/me")
def erase():
    """200 when everything is erased; 202 while some step is pending (Redis or the archive
    unreachable): it is retried in the background until done, and GET on the request
    (the Location header) shows how far it got."""
    request = runtime().erasure.erase(caller().user_id)
    if request.complete:
        return erasure_json(request)
    return erasure_json(request), 202, {"Location": f"/v1/me/erasure/{request.id}"}


@bp.get("/v1/me/erasure/<request_id>")
def erasure_state(request_id: str):
    return erasure_json(runtime().account.erasure(caller().user_id, request_id))


def erasure_json(request: DeletionRequest) -> dict[str, Any]:
    return {
        "request_id": request.id,
        "status": request.status,
        "erased": request.complete,
        "complete": request.done_steps,
        "pending": list(request.pending),
        "requested_at": request.requested_at.isoformat(),
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "attempts": request.attempts,
        "counts": request.counts,
    }


@bp.get("/v1/me/retention")
def read_retention():
    return asdict(runtime().account.retention(caller().user_id))


@bp.put("/v1/me/retention")
def update_retention():
    changes = body("RetentionPolicy")
    return asdict(runtime().account.set_retention(caller().user_id, changes))
