"""Chat over HTTP: ``POST /v1/chat`` (Server-Sent Events or one JSON body), and what every
chat endpoint shares (the OpenAI-compatible one is services/api/completions.py).

Each request runs one agent turn (services/agent.py) for the authenticated user. A turn
whose client goes away mid-stream is still finished on the server (``run_to_end``), on
every chat endpoint, so what the model said and wrote is whole, and a retry with the same
``Idempotency-Key`` gets that first result back instead of running the turn again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request, stream_with_context

from services.agent import TurnEvent
from services.api.common import body, caller, request_id, runtime
from services.errors import InvalidInput
from services.idempotency import HEADER as IDEMPOTENCY_HEADER
from services.idempotency import Idempotency
from services.telemetry import user_hash

bp = Blueprint("chat", __name__)
log = logging.getLogger("memory_agent.chat")

# ---- /v1/chat -----------------------------------------------------------------------------


@bp.post("/v1/chat")
def chat():
    data = body("ChatRequest")
    user_id = caller().user_id
    stream = bool(data.get("stream", False))
    key = _idempotency_key()
    rt = runtime()
    idempotency = rt.idempotency
    if key is not None:
        replay = idempotency.claim(user_id, key, _fingerprint(data))
        if replay is not None:
            return _respond(replay, stream)
    try:
        events = started(
            rt.agent.run_turn(
                user_id, data.get("thread_id"), data["message"], request_id=request_id()
            )
        )
    except BaseException:
        if key is not None:
            idempotency.release(user_id, key)
        raise
    recorded = _recorded(observed(events), idempotency, user_id, key)
    if stream:
        return sse_response(_chat_frames(recorded))
    return chat_body([event.to_dict() for event in recorded])


def chat_body(events: list[dict[str, Any]]) -> dict[str, Any]:
    final = events[-1]
    return {
        "thread_id": final["thread_id"],
        "text": final["text"],
        "memory_events": [e for e in events if e["type"] == "memory"],
        "errors": [e for e in events if e["type"] == "error"],
        "final": final,
    }


def _respond(events: list[dict[str, Any]], stream: bool) -> Response | dict[str, Any]:
    if stream:
        return sse_response(sse_frame(event["type"], event) for event in events)
    return chat_body(events)


def _chat_frames(events: Iterator[TurnEvent]) -> Iterator[str]:
    try:
        for event in events:
            yield sse_frame(event.type, event.to_dict())
    finally:
        close_events(events)


# orjson: a few times faster than json for an event; dates and dataclasses still go
# through str() as before, so what a client reads keeps its form.
_SSE_JSON = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def sse_frame(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {orjson.dumps(data, default=str, option=_SSE_JSON).decode()}\n\n"


def sse_response(frames: Iterable[str]) -> Response:
    response = Response(stream_with_context(frames), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # no proxy buffering of the stream
    return response


def started(events: Iterator[TurnEvent]) -> Iterator[TurnEvent]:
    """The turn with its first event already made: the thread load and the retrieval run
    before any response starts, so a database outage is a 503, never a 200 stream."""
    first = next(events)
    return itertools.chain([first], events)


def observed(events: Iterator[TurnEvent]) -> Iterator[TurnEvent]:
    """Count each turn in the metrics and log its latency breakdown (never its text)."""
    metrics = current_app.extensions["metrics"]
    auth_ms = g.get("auth_ms")
    request_id_ = request_id()
    user = user_hash(caller().user_id)
    for event in events:
        if event.type == "error":
            metrics.observe_turn_error(event.code)
        elif event.type == "final":
            final = event.to_dict()
            metrics.observe_turn(final)
            log.info(
                "chat turn finished",
                extra={
                    "json_fields": {
                        "request_id": request_id_,
                        "user": user,
                        "provider": final["provider"],
                        "model": final["model"],
                        "finish_reason": final["finish_reason"],
                        "usage": final["usage"],
                        "cost_usd": final["cost_usd"],
                        "latency_ms": {"auth_ms": auth_ms, **final["latency"]},
                    }
                },
            )
        yield event


def run_to_end(events: Iterator[TurnEvent], seen: list[TurnEvent]) -> Iterator[TurnEvent]:
    """Pass the turn's events through, collecting them in ``seen``. If the reader stops
    early (the client went away mid-stream), run the rest of the turn anyway: the answer
    and the memory writes are finished and stored whole, never cut where the client left,
    and the same happens whichever chat endpoint the client used."""
    try:
        for event in events:
            seen.append(event)
            yield event
    finally:
        seen.extend(events)


def close_events(events: Iterator[TurnEvent]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()


def _recorded(
    events: Iterator[TurnEvent], idempotency: Idempotency, user_id: str, key: str | None
) -> Iterator[TurnEvent]:
    """The turn run to its end, its events stored for idempotent retries."""
    seen: list[TurnEvent] = []
    try:
        yield from run_to_end(events, seen)
    finally:
        if key is not None:
            idempotency.store(user_id, key, [e.to_dict() for e in seen])


# ---- idempotency --------------------------------------------------------------------------


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidInput(f"{IDEMPOTENCY_HEADER} must be 1-200 printable characters", "key")
    return key


def _fingerprint(data: dict[str, Any]) -> str:
    # ``stream`` only chooses how the result is sent: a streamed first try may be retried
    # without streaming and still get its result.
    turn = {name: value for name, value in data.items() if name != "stream"}
    return hashlib.sha256(json.dumps(turn, sort_keys=True).encode()).hexdigest()
