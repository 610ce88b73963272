"""The memory store: what the agent knows about each user, with full history.

Owns the ``memories`` and ``memory_events`` tables. Every write records an event in the
same transaction. Every read is scoped to one user and never returns an expired memory.
Search is hybrid: exact cosine distance over the user's own rows (pgvector) fused with
PostgreSQL full-text rank by reciprocal rank fusion, so per-user cost does not grow with
other users' data, and rows not embedded yet are still found by their words. The SQL is
in ``services.memories.sql``, the checks in ``services.memories.validation``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from services import lexical
from services.db import Pool, Tx, text_array
from services.embeddings import Embedder
from services.errors import Conflict, InvalidInput, NotFound
from services.memories import sql
from services.memories.access import AccessRecorder
from services.memories.cursor import decode_cursor, encode_cursor
from services.memories.records import (
    DEFAULT_NAMESPACE,
    Kind,
    Memory,
    MemoryEvent,
    NewMemory,
    Page,
    RankedMemory,
    SearchHit,
    SearchMode,
    StoreLimits,
    Written,
    ranked_reader,
    read_event,
    read_memory,
    search_hit_reader,
)
from services.memories.validation import (
    check_content,
    check_id,
    check_importance,
    check_kind,
    check_limit,
    check_metadata,
    check_query,
    check_text,
    check_time,
    check_uuid,
    check_vector,
    check_version,
)
from services.memories.writes import (
    ChangeListener,
    announces,
    bulk_row,
    check_expected_version,
    insert_or_lock,
    lock_by_id,
    record_event,
    update,
)
from services.pgwire import vector_binary


class MemoryStore:
    def __init__(
        self,
        pool: Pool,
        embedder: Embedder,
        limits: StoreLimits | None = None,
        on_change: ChangeListener | None = None,
        jobs_pool: Pool | None = None,
    ):
        self.pool = pool  # per-user transactions (row-level security applies)
        self.jobs_pool = jobs_pool or pool  # batched access stats span users
        self.embedder = embedder
        self.limits = limits or StoreLimits()
        self._access = AccessRecorder()
        # Called after the commit with the ids whose text was written (Pub/Sub publisher,
        # the in-process embedding worker's wake-up); its failures are logged, not raised.
        self.on_change = on_change

    # ---- writes -------------------------------------------------------------------------

    @announces
    def upsert(
        self,
        user_id: str,
        content: str,
        *,
        key: str | None = None,
        memory_id: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        context: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        observed_at: datetime | None = None,
        expires_at: datetime | None = None,
        expected_version: int | None = None,
        kind: Kind = "fact",
        actor: str = "api",
        request_id: str | None = None,
    ) -> Written:
        """Add a memory, or update the one named by ``memory_id`` or ``key``.

        A new fact without a key is checked for near-duplicates once it is embedded (see
        ``services.memories.dedup``); episodes never merge. ``expected_version`` makes the
        update conditional. ``kind`` applies to new memories; an update keeps its kind.
        """
        check_id(user_id, "user_id")
        check_id(namespace, "namespace")
        max_chars = self.limits.max_content_chars
        content = check_content(content, "content", max_chars)
        if context is not None:
            context = check_text(context, "context", max_chars)
        if metadata is not None:
            check_metadata(metadata)
        if importance is not None:
            importance = check_importance(importance)
        if key is not None:
            check_id(key, "key")
        expected_version = check_version(expected_version)
        observed_at = check_time(observed_at, "observed_at")
        expires_at = check_time(expires_at, "expires_at")
        kind = check_kind(kind)
        if memory_id is not None:
            memory_id = check_uuid(memory_id, "memory_id")
        elif key is None and expected_version is not None:
            raise InvalidInput("version needs memory_id or key", "version")

        with self.pool.transaction(user_id) as tx:
            if memory_id is not None:
                current = lock_by_id(tx, user_id, memory_id)
                if current is None:
                    raise NotFound(f"memory {memory_id} not found", "memory_id")
            else:
                item = NewMemory(
                    content, context or "", key, metadata or {},
                    0.5 if importance is None else importance, observed_at, expires_at,
                    kind=kind,
                )  # fmt: skip
                current = insert_or_lock(tx, user_id, namespace, item, actor, request_id)
                if isinstance(current, Written):
                    if expected_version is not None:
                        raise NotFound(f"memory with key {key!r} not found", "key")
                    return current

            check_expected_version(current, expected_version)
            return update(
                tx,
                current,
                content=content,
                context=current.context if context is None else context,
                metadata=current.metadata if metadata is None else metadata,
                importance=current.importance if importance is None else float(importance),
                observed_at=observed_at,
                expires_at=current.expires_at if expires_at is None else expires_at,
                actor=actor,
                request_id=request_id,
            )

    @announces
    def add_many(
        self,
        user_id: str,
        items: Sequence[NewMemory],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str = "import",
        request_id: str | None = None,
    ) -> list[str]:
        """Insert many new memories in one statement (imports, benchmarks); returns ids.

        Items may carry a precomputed embedding of this deployment's dimension; the rest
        wait in the outbox. Nothing is written if any item is invalid.
        """
        check_id(user_id, "user_id")
        check_id(namespace, "namespace")
        max_chars, dim = self.limits.max_content_chars, self.embedder.dim
        rows = [bulk_row(item, f"items[{i}]", max_chars, dim) for i, item in enumerate(items)]
        if not rows:
            return []
        arrays = [
            text_array(values) if sql.BULK_ARRAYS[name] in ("uuid", "text") else list(values)
            for name, values in zip(sql.BULK_ARRAYS, zip(*rows), strict=True)
        ]
        with self.pool.transaction(user_id) as tx:
            inserted = [
                sql.BULK_INSERTED.read(row)
                for row in tx.execute(
                    sql.BULK_INSERT, [user_id, namespace, self.embedder.model, *arrays]
                )
            ]
            if len(inserted) != len(rows):
                raise Conflict("some keys already exist; nothing was written", "items")
            tx.execute(
                sql.BULK_EVENTS,
                [
                    user_id,
                    namespace,
                    actor,
                    request_id,
                    *(text_array([r[name] for r in inserted]) for name in _EVENT_TEXTS),
                    [r["version"] for r in inserted],
                ],
            )
        return [r["id"] for r in inserted]

    def delete(
        self,
        user_id: str,
        memory_id: str,
        *,
        expected_version: int | None = None,
        actor: str = "api",
        request_id: str | None = None,
    ) -> Memory:
        check_id(user_id, "user_id")
        memory_id = check_uuid(memory_id, "memory_id")
        with self.pool.transaction(user_id) as tx:
            current = lock_by_id(tx, user_id, memory_id)
            if current is None:
                raise NotFound(f"memory {memory_id} not found", "memory_id")
            check_expected_version(current, expected_version)
            tx.execute(sql.DELETE, [memory_id])
            record_event(tx, current, "DELETE", current, None, actor, request_id)
            return current

    # ---- reads --------------------------------------------------------------------------

    def get(self, user_id: str, memory_id: str) -> Memory:
        """The memory, or the one it was merged into."""
        check_id(user_id, "user_id")
        memory_id = check_uuid(memory_id, "memory_id")
        with self.pool.transaction(user_id) as tx:
            row = tx.one(sql.GET, [memory_id, user_id])
            if row is None:
                merged_into = tx.value(sql.MERGED_INTO, [user_id, memory_id])
                if merged_into is None:
                    raise NotFound(f"memory {memory_id} not found", "memory_id")
                row = tx.one(sql.GET, [merged_into, user_id])
                if row is None:
                    raise NotFound(f"memory {memory_id} not found", "memory_id")
        return read_memory(row)

    def list(
        self,
        user_id: str,
        *,
        namespace: str | None = DEFAULT_NAMESPACE,
        limit: int = 50,
        cursor: str | None = None,
        kind: Kind | None = None,
    ) -> Page:
        """Newest first, keyset-paged; ``namespace=None`` lists every namespace and
        ``kind=None`` every kind."""
        check_id(user_id, "user_id")
        if namespace is not None:
            check_id(namespace, "namespace")
        limit = check_limit(limit)
        kind = check_kind(kind) if kind is not None else None
        after, before_id = decode_cursor(cursor) if cursor else (None, None)
        with self.pool.transaction(user_id) as tx:
            rows = tx.execute(
                sql.LIST,
                [user_id, namespace, namespace, kind, kind, after, after, before_id, limit + 1],
            )
        items = [read_memory(row) for row in rows[:limit]]
        next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
        return Page(items, next_cursor)

    def history(self, user_id: str, memory_id: str) -> list[MemoryEvent]:
        """Every ADD/UPDATE/DELETE of one memory, oldest first; kept after deletion."""
        check_id(user_id, "user_id")
        memory_id = check_uuid(memory_id, "memory_id")
        with self.pool.transaction(user_id) as tx:
            rows = tx.execute(sql.HISTORY, [user_id, memory_id])
        if not rows:
            raise NotFound(f"memory {memory_id} not found", "memory_id")
        return [read_event(row) for row in rows]

    def check_query(self, user_id: str, namespace: str, query: Any) -> None:
        check_id(user_id, "user_id")
        check_id(namespace, "namespace")
        check_query(query, self.limits.max_content_chars)

    def speakers(self, user_id: str, namespace: str, kind: Kind | None = None) -> list[str]:
        """The distinct ``metadata.speaker`` values among the user's live memories."""
        rows = self.pool.read(sql.SPEAKERS, [user_id, namespace, kind, kind], user_id)
        return sorted(str(row[0]) for row in rows if row[0])

    def rank(
        self,
        user_id: str,
        *,
        namespace: str,
        kind: Kind | None,
        query_vector: np.ndarray | None,
        lexical_text: str,
        scope: dict[str, Any] | None,
        candidates: int,
        metadata_filter: dict[str, Any] | None = None,
    ) -> list[RankedMemory]:
        """The union of the top ``candidates`` of each ranking the pipeline fuses: vector,
        lexical, and vector among the memories whose metadata contains ``scope``; whole
        rows, in one round trip. Exact over the user's rows (no approximate index)."""
        vector_text = None
        if query_vector is not None:
            vector_text = vector_binary(check_vector(query_vector, self.embedder.dim, "query"))
        scope_json = json.dumps(scope) if scope else None
        params = [vector_text, lexical.query(lexical_text), scope_json, user_id, namespace,
                  json.dumps(metadata_filter or {}), kind, kind,
                  candidates, candidates, candidates]  # fmt: skip
        rows = self.pool.read(sql.RANK, params, user_id)
        return [_read_ranked(row) for row in rows]

    def record_access(self, ids: Iterable[str]) -> None:
        """Count hits for the batched access statistics (written by the background loop)."""
        self._access.record(ids)

    def search(
        self,
        user_id: str,
        query: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        limit: int = 10,
        metadata_filter: dict[str, Any] | None = None,
        mode: SearchMode = "hybrid",
        query_vector: np.ndarray | None = None,
        kind: Kind | None = None,
    ) -> list[SearchHit]:
        """One raw ranking of the user's memories for ``query``, best first: vector,
        lexical, or their plain reciprocal-rank fusion. The product's retrieval pipeline
        (``services.retrieval``) builds on ``rank``; this serves callers who want one
        store ranking as it is."""
        self.check_query(user_id, namespace, query)
        if mode not in ("hybrid", "vector", "lexical"):
            raise InvalidInput("mode must be hybrid, vector or lexical", "mode")
        limit = check_limit(limit)
        if metadata_filter is not None:
            check_metadata(metadata_filter, "filter")
        kind = check_kind(kind) if kind is not None else None
        vector_text = None
        if mode != "lexical":
            if query_vector is None:
                query_vector = self.embedder.embed_query(query)
            vector_text = vector_binary(check_vector(query_vector, self.embedder.dim, "query"))
        text_query = lexical.query(query) if mode != "vector" else None
        candidates = max(limit * 4, 40)
        scope = [user_id, namespace, json.dumps(metadata_filter or {}), kind, kind]

        def params(approximate: bool) -> list[Any]:  # the HNSW path filters the user twice
            ann_scope = scope if approximate else []
            return [vector_text, text_query, *scope, *ann_scope, candidates, candidates, limit]

        if not self.limits.hnsw_index:
            rows = self.pool.read(sql.search(False), params(False), user_id)
        else:
            with self.pool.transaction(user_id) as tx:
                large = self._uses_ann(tx, user_id, namespace)
                if large:
                    tx.execute("SET LOCAL hnsw.iterative_scan = 'relaxed_order'")
                rows = tx.execute(sql.search(large), params(large))
        ideal = sql.ideal_score(mode)
        hits = [_read_hit(row, ideal) for row in rows]
        self._access.record(hit.memory.id for hit in hits)
        return hits

    # ---- maintenance --------------------------------------------------------------------

    def flush_access_stats(self) -> int:
        """Write the batched hit counts from searches (called by the background loop)."""
        return self._access.flush(self.jobs_pool)

    def count(self, user_id: str, namespace: str | None = None, kind: Kind | None = None) -> int:
        with self.pool.transaction(user_id) as tx:
            return int(tx.value(sql.COUNT, [user_id, namespace, namespace, kind, kind]))

    # ---- internals ----------------------------------------------------------------------

    def _uses_ann(self, tx: Tx, user_id: str, namespace: str) -> bool:
        if not self.limits.hnsw_index:
            return False
        bounded = tx.value(sql.COUNT_UP_TO, [user_id, namespace, self.limits.hnsw_min_rows + 1])
        return int(bounded) > self.limits.hnsw_min_rows


_read_hit = search_hit_reader(sql.SEARCH_ROW)
_read_ranked = ranked_reader(sql.RANK_ROW)
_EVENT_TEXTS = ("id", "key", "content", "context")  # the text arrays of sql.BULK_EVENTS
