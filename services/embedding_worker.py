"""The embedding outbox: memories written without a vector are work for this worker.

A memory row with ``embedding IS NULL`` is pending. ``embed_pending`` claims a batch with
``FOR UPDATE SKIP LOCKED`` (so any number of workers, threads, Cloud Functions or
processes can run at once without embedding a row twice), embeds the batch in one
provider call, writes the vectors back, and folds near-duplicates into older memories.
A provider failure rolls the transaction back: the rows stay pending for the next run.
Locally a background thread runs it; in the cloud the ``embed_memories`` function does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.db import Pool, text_array
from services.embeddings import Embedder, to_pgvector
from services.limits import MAX_METADATA_BYTES
from services.memories.dedup import MergeRule, merge_duplicates
from services.usage import UsageRecorder, embedding_usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxRun:
    embedded: int
    merged: int


def embed_pending(
    pool: Pool,
    embedder: Embedder,
    *,
    batch_size: int,
    duplicate_threshold: float,
    memory_ids: Sequence[str] | None = None,
) -> OutboxRun:
    """Embed one batch of pending memories (only ``memory_ids`` if given)."""
    with pool.transaction() as tx:
        rows = tx.execute(
            """
            SELECT id::text, content, context, user_id FROM memories
            WHERE embedding IS NULL AND (%s::uuid[] IS NULL OR id = ANY(%s::uuid[]))
            ORDER BY updated_at
            LIMIT %s
            FOR UPDATE SKIP LOCKED
            """,
            [memory_ids, memory_ids, batch_size],
        )
        if not rows:
            return OutboxRun(0, 0)
        texts = [document_text(c, ctx) for _, c, ctx, _ in rows]
        started = time.perf_counter()
        vectors = embedder.embed_documents(texts)
        elapsed_ms = (time.perf_counter() - started) * 1000
        ids = [row[0] for row in rows]
        tx.execute(
            """
            UPDATE memories m SET embedding = v.embedding::vector, embedding_model = %s
            FROM unnest(%s::uuid[], %s::text[]) AS v(id, embedding)
            WHERE m.id = v.id
            """,
            [embedder.model, text_array(ids), text_array([to_pgvector(v) for v in vectors])],
        )
        rule = MergeRule(similarity=duplicate_threshold)
        merged = merge_duplicates(tx, ids, rule, MAX_METADATA_BYTES)
        spent = [(row[3], text) for row, text in zip(rows, texts)]
        reported = getattr(embedder, "last_usage_tokens", 0)
        rows = embedding_usage(embedder, spent, elapsed_ms, reported_tokens=reported)
        UsageRecorder(pool).record_in(tx, rows)
    return OutboxRun(len(ids), merged)


def drain(
    pool: Pool,
    embedder: Embedder,
    *,
    batch_size: int,
    duplicate_threshold: float,
    memory_ids: Sequence[str] | None = None,
    deadline: float | None = None,
) -> OutboxRun:
    """Embed batches until nothing is pending (or the monotonic ``deadline`` passes)."""
    embedded = merged = 0
    while deadline is None or time.monotonic() < deadline:
        run = embed_pending(
            pool,
            embedder,
            batch_size=batch_size,
            duplicate_threshold=duplicate_threshold,
            memory_ids=memory_ids,
        )
        embedded += run.embedded
        merged += run.merged
        if run.embedded < batch_size:
            break
    return OutboxRun(embedded, merged)


def document_text(content: str, context: str) -> str:
    return f"{content}\n{context}" if context else content


class BackgroundWorker:
    """Runs ``tick`` every ``interval`` seconds on a daemon thread until stopped.

    Used in local mode for the outbox (and the batched access statistics), so a laptop
    needs no Cloud Function. ``wake`` runs the next tick at once (after a write).
    """

    def __init__(self, tick: Callable[[], object], interval: float, name: str) -> None:
        self._tick = tick
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("background tick failed; retrying in %.1fs", self._interval)
            self._wake.wait(self._interval)
            self._wake.clear()
