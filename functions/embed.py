"""``embed_memories``: the embedding outbox as a Pub/Sub CloudEvent function and an HTTP sweep.

The CloudEvent carries a Pub/Sub message whose data is ``{"memory_ids": [...]}`` (see
services/publisher.py); those rows are embedded if still pending. A message without ids is
a sweep. Rows already embedded, deleted meanwhile, or claimed by a concurrent worker are
skipped, so duplicate and out-of-order deliveries are harmless and the message is acked.
A provider or database failure raises: the platform answers 500 and Pub/Sub redelivers;
the rows stay pending. An undecodable message is logged and acked (a retry cannot fix it).

The HTTP variant (``embed_memories_sweep``, for Cloud Scheduler) drains every pending row
within its time budget; it requires the scheduler's OIDC token.

Every sweep (either variant) then runs background reflection (services/reflection.py) over
threads idle for ``REFLECTION_IDLE_MINUTES`` and embeds the memories it wrote. A reflection
failure is logged and reported, never turned into a failed sweep (its threads are retried).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from typing import Any

import flask

from functions.common import (
    LazyVerifier,
    RuntimeFactory,
    VerifierFactory,
    json_reply,
    named,
)
from services.embedding_worker import OutboxRun, drain
from services.embeddings import duplicate_threshold
from services.oidc import make_verifier
from services.reflection import ReflectionConfig, ReflectionReport, Reflector
from services.runtime import Runtime

log = logging.getLogger(__name__)


class BadMessage(ValueError):
    """The Pub/Sub message cannot name memories; acked, because redelivery cannot help."""


def memory_ids_from_event(data: Any) -> list[str] | None:
    """The memory ids in a Pub/Sub ``messagePublished`` event's data; None means sweep."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise BadMessage("event data is not a Pub/Sub push envelope")
    raw = data["message"].get("data")
    if not raw:
        return None
    try:
        payload = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as error:
        raise BadMessage(f"message data is not base64 JSON: {error}") from None
    ids = payload.get("memory_ids") if isinstance(payload, dict) else None
    if ids is None:
        return None
    if not isinstance(ids, list):
        raise BadMessage("memory_ids must be a list")
    valid = []
    for value in ids:
        try:
            valid.append(str(uuid.UUID(str(value))))
        except ValueError:
            log.warning("ignoring malformed memory id %r", value)
    return valid


def embed(runtime: Runtime, memory_ids: list[str] | None) -> OutboxRun:
    settings = runtime.settings
    return drain(
        runtime.pool,
        runtime.embedder,
        batch_size=settings.embed_batch_size,
        duplicate_threshold=duplicate_threshold(settings, runtime.embedder.model),
        memory_ids=memory_ids,
        deadline=time.monotonic() + settings.embed_time_budget_seconds,
    )


def reflect(runtime: Runtime) -> ReflectionReport | None:
    """Background reflection after a sweep; None when the runtime has no agent (router)."""
    if runtime.agent is None:
        return None
    try:
        report = Reflector(
            runtime.pool,
            runtime.memories,
            runtime.agent.router,
            runtime.usage,
            config=ReflectionConfig.from_settings(runtime.settings),
        ).run()
        if report.changed_ids:
            embed(runtime, report.changed_ids)
    except Exception:
        log.exception("background reflection failed")
        report = ReflectionReport(disabled="failed; retried next sweep")
    return report


def pending_count(runtime: Runtime) -> int:
    with runtime.pool.transaction() as tx:
        return int(tx.value("SELECT count(*) FROM memories WHERE embedding IS NULL"))


def pubsub_handler(runtime: RuntimeFactory, name: str = "embed_memories"):
    def handle(event: Any) -> None:
        event_id = event["id"] if hasattr(event, "__getitem__") else "?"
        try:
            ids = memory_ids_from_event(event.data)
        except BadMessage as error:
            log.error("acking undecodable event %s: %s", event_id, error)
            return
        if ids == []:
            log.info("event %s names no valid memory id; acked", event_id)
            return
        current = runtime()
        run = embed(current, ids)  # raises on failure: Pub/Sub redelivers
        log.info(
            "event %s: %s ids, embedded %d, merged %d",
            event_id,
            "sweep" if ids is None else len(ids),
            run.embedded,
            run.merged,
        )
        if ids is None:
            reflect(current)

    return named(name, handle)


def sweep_handler(
    runtime: RuntimeFactory,
    verifier: VerifierFactory = make_verifier,
    name: str = "embed_memories_sweep",
):
    gate = LazyVerifier(runtime, verifier)

    def handle(request: flask.Request) -> flask.Response:
        rejected = gate.check(request)
        if rejected is not None:
            return rejected
        current = runtime()
        try:
            run = embed(current, None)
        except Exception as error:
            log.exception("embedding sweep failed")
            body = {"error": {"code": "embedding_failed", "message": type(error).__name__}}
            return json_reply({**body, "pending": _safe_pending(current)}, 503)
        reflection = reflect(current)
        body: dict[str, Any] = {"embedded": run.embedded, "merged": run.merged}
        if reflection is not None:
            body["reflection"] = reflection.as_dict()
        return json_reply({**body, "pending": pending_count(current)})

    return named(name, handle)


def _safe_pending(runtime: Runtime) -> int | None:
    try:
        return pending_count(runtime)
    except Exception:
        return None
