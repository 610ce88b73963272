"""The memory store: what the agent knows about each user, with full history.

Owns the ``memories`` and ``memory_events`` tables. Every write records an event in the
same transaction. Every read is scoped to one user and never returns an expired memory.
Search is hybrid: exact cosine distance over the user's own rows (pgvector) fused with
PostgreSQL full-text rank by reciprocal rank fusion, so per-user cost does not grow with
other users' data, and rows not embedded yet are still found by their words.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from services import lexical
from services.db import Pool, Tx, text_array
from services.embeddings import Embedder, to_pgvector
from services.errors import Conflict, InvalidInput, NotFound
from services.pgwire import vector_binary

DEFAULT_NAMESPACE = "default"
RRF_K = 60  # the usual reciprocal-rank-fusion constant
MAX_ID_CHARS = 256
MAX_METADATA_BYTES = 16_384
SearchMode = Literal["hybrid", "vector", "lexical"]
Kind = Literal["fact", "episode"]
KINDS: tuple[Kind, ...] = ("fact", "episode")
Op = Literal["ADD", "UPDATE", "DELETE", "MERGED", "UNCHANGED"]


@dataclass(frozen=True)
class Memory:
    id: str
    user_id: str
    namespace: str
    key: str
    content: str
    context: str
    metadata: dict[str, Any]
    importance: float
    embedded: bool
    observed_at: datetime
    created_at: datetime
    updated_at: datetime
    last_accessed_at: datetime | None
    access_count: int
    expires_at: datetime | None
    version: int
    kind: Kind = "fact"


@dataclass(frozen=True)
class MemoryEvent:
    id: int
    memory_id: str
    op: str
    old_content: str | None
    new_content: str | None
    old_context: str | None
    new_context: str | None
    version: int
    actor: str
    request_id: str | None
    superseded_at: datetime | None
    merged_into: str | None
    created_at: datetime


@dataclass(frozen=True)
class Written:
    """The outcome of a write: the memory as stored and what happened to it."""

    memory: Memory
    op: Op


@dataclass(frozen=True)
class SearchHit:
    memory: Memory
    score: float
    vector_rank: int | None
    lexical_rank: int | None
    similarity: float | None


@dataclass(frozen=True)
class RankedMemory:
    """A candidate of the retrieval pipeline: a memory and its place in each ranking."""

    memory: Memory
    vector_rank: int | None
    lexical_rank: int | None
    scoped_rank: int | None  # among the memories matching the pipeline's scope filter
    similarity: float | None


@dataclass(frozen=True)
class Page:
    items: list[Memory]
    next_cursor: str | None


@dataclass(frozen=True)
class NewMemory:
    """One memory for ``add_many`` (bulk import); the key defaults to the new id."""

    content: str
    context: str = ""
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    importance: float = 0.5
    observed_at: datetime | None = None
    expires_at: datetime | None = None
    embedding: Sequence[float] | None = None
    kind: Kind = "fact"


@dataclass(frozen=True)
class StoreLimits:
    max_content_chars: int = 4000
    hnsw_index: bool = False
    hnsw_min_rows: int = 5000


_COLUMNS = (
    "m.id::text, m.user_id, m.namespace, m.key, m.content, m.context, m.metadata, "
    "m.importance, m.embedding IS NOT NULL, m.observed_at, m.created_at, m.updated_at, "
    "m.last_accessed_at, m.access_count, m.expires_at, m.version, m.kind"
)
_WIDTH = len(_COLUMNS.split(","))  # a search row is a memory row, then its ranks and score
_ALIVE = "(m.expires_at IS NULL OR m.expires_at > now())"
_EVENT_COLUMNS = (
    "id, memory_id::text, op, old_content, new_content, old_context, new_context, version, "
    "actor, request_id, superseded_at, merged_into::text, created_at"
)


ChangeListener = Callable[[list[str]], None]
_log = logging.getLogger(__name__)


def _announces(method: Callable[..., Any]) -> Callable[..., Any]:
    """Tell the store's ``on_change`` which memories a write added or changed, after commit."""

    @functools.wraps(method)
    def wrapper(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        if self.on_change is not None:
            if isinstance(result, Written):
                ids = [result.memory.id] if result.op in ("ADD", "UPDATE") else []
            else:
                ids = list(result)
            if ids:
                try:
                    self.on_change(ids)
                except Exception:
                    _log.exception("on_change listener failed for %d memories", len(ids))
        return result

    return wrapper


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

    @_announces
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
        ``services.dedup``); episodes never merge. ``expected_version`` makes the update
        conditional. ``kind`` applies to new memories; an update keeps the memory's kind.
        """
        check_id(user_id, "user_id")
        check_id(namespace, "namespace")
        content = check_content(content, "content", self.limits.max_content_chars)
        if context is not None:
            context = check_text(context, "context", self.limits.max_content_chars)
        if metadata is not None:
            check_metadata(metadata)
        if importance is not None:
            importance = check_importance(importance)
        if key is not None:
            check_id(key, "key")
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInput("version must be an integer", "version")
        observed_at = check_time(observed_at, "observed_at")
        expires_at = check_time(expires_at, "expires_at")
        kind = check_kind(kind)

        with self.pool.transaction(user_id) as tx:
            if memory_id is not None:
                current = self._lock_by_id(tx, user_id, check_uuid(memory_id, "memory_id"))
                if current is None:
                    raise NotFound(f"memory {memory_id} not found", "memory_id")
            else:
                current = None
                if key is None and expected_version is not None:
                    raise InvalidInput("version needs memory_id or key", "version")
                fields = dict(
                    user_id=user_id,
                    namespace=namespace,
                    key=key,
                    content=content,
                    context=context or "",
                    metadata=metadata or {},
                    importance=0.5 if importance is None else float(importance),
                    observed_at=observed_at,
                    expires_at=expires_at,
                    kind=kind,
                )
                inserted = _insert(tx, **fields)
                if inserted is None:
                    current = self._lock_by_key(tx, user_id, namespace, key or "")
                    if current is None:  # an expired row still holds the key: retire it
                        _retire_expired(tx, user_id, namespace, key or "", actor, request_id)
                        inserted = _insert(tx, **fields)
                if inserted is not None:
                    if expected_version is not None:
                        raise NotFound(f"memory with key {key!r} not found", "key")
                    record_event(tx, inserted, "ADD", None, inserted, actor, request_id)
                    return Written(inserted, "ADD")
                assert current is not None

            if expected_version is not None and expected_version != current.version:
                raise Conflict(
                    f"memory {current.id} is at version {current.version}, not {expected_version}",
                    "version",
                )
            return self._update(
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

    @_announces
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
        rows: list[list[Any]] = []
        for index, item in enumerate(items):
            where = f"items[{index}]"
            content = check_content(item.content, f"{where}.content", self.limits.max_content_chars)
            context = check_text(item.context, f"{where}.context", self.limits.max_content_chars)
            check_metadata(item.metadata)
            importance = check_importance(item.importance)
            if item.key is not None:
                check_id(item.key, f"{where}.key")
            vector = None
            if item.embedding is not None:
                vector = to_pgvector(check_vector(item.embedding, self.embedder.dim, where))
            new_id = str(uuid.uuid4())
            rows.append(
                [
                    new_id,
                    item.key or new_id,
                    content,
                    context,
                    json.dumps(item.metadata),
                    importance,
                    lexical.document(content, context),
                    vector,
                    check_time(item.observed_at, f"{where}.observed_at"),
                    check_time(item.expires_at, f"{where}.expires_at"),
                    check_kind(item.kind, f"{where}.kind"),
                ]
            )
        if not rows:
            return []
        columns = list(zip(*rows))
        with self.pool.transaction(user_id) as tx:
            inserted = tx.execute(
                f"""
                INSERT INTO memories (id, user_id, namespace, key, content, context, metadata,
                    importance, tsv, embedding, embedding_model, observed_at, expires_at, kind)
                SELECT r.id, %s, %s, r.key, r.content, r.context, r.metadata::jsonb,
                    r.importance, to_tsvector('{lexical.TEXT_SEARCH_CONFIG}', r.doc),
                    r.vec::vector, CASE WHEN r.vec IS NULL THEN NULL ELSE %s END,
                    COALESCE(r.observed_at, now()), r.expires_at, r.kind
                FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::real[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[],
                    %s::text[])
                    AS r(id, key, content, context, metadata, importance, doc, vec,
                         observed_at, expires_at, kind)
                ON CONFLICT (user_id, namespace, key) DO NOTHING
                RETURNING id::text, key, content, context, version
                """,
                [
                    user_id,
                    namespace,
                    self.embedder.model,
                    *[
                        list(column) if index in (5, 8, 9) else text_array(column)
                        for index, column in enumerate(columns)
                    ],
                ],
            )
            if len(inserted) != len(rows):
                raise Conflict("some keys already exist; nothing was written", "items")
            tx.execute(
                """
                INSERT INTO memory_events (memory_id, user_id, namespace, key, op,
                    new_content, new_context, version, actor, request_id)
                SELECT r.id, %s, %s, r.key, 'ADD', r.content, r.context, r.version, %s, %s
                FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::int[])
                    AS r(id, key, content, context, version)
                """,
                [
                    user_id,
                    namespace,
                    actor,
                    request_id,
                    *[
                        list(column) if index == 4 else text_array(column)
                        for index, column in enumerate(zip(*inserted))
                    ],
                ],
            )
        return [row[0] for row in inserted]

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
            current = self._lock_by_id(tx, user_id, memory_id)
            if current is None:
                raise NotFound(f"memory {memory_id} not found", "memory_id")
            if expected_version is not None and expected_version != current.version:
                raise Conflict(
                    f"memory {memory_id} is at version {current.version}, not {expected_version}",
                    "version",
                )
            tx.execute("DELETE FROM memories WHERE id = %s", [memory_id])
            record_event(tx, current, "DELETE", current, None, actor, request_id)
            return current

    # ---- reads --------------------------------------------------------------------------

    def get(self, user_id: str, memory_id: str) -> Memory:
        check_id(user_id, "user_id")
        memory_id = check_uuid(memory_id, "memory_id")
        with self.pool.transaction(user_id) as tx:
            row = tx.one(
                f"SELECT {_COLUMNS} FROM memories m "
                f"WHERE m.id = %s AND m.user_id = %s AND {_ALIVE}",
                [memory_id, user_id],
            )
            if row is None:
                merged_into = tx.value(
                    "SELECT merged_into::text FROM memory_events WHERE user_id = %s "
                    "AND memory_id = %s AND merged_into IS NOT NULL ORDER BY id DESC LIMIT 1",
                    [user_id, memory_id],
                )
                if merged_into is None:
                    raise NotFound(f"memory {memory_id} not found", "memory_id")
                row = tx.one(
                    f"SELECT {_COLUMNS} FROM memories m "
                    f"WHERE m.id = %s AND m.user_id = %s AND {_ALIVE}",
                    [merged_into, user_id],
                )
                if row is None:
                    raise NotFound(f"memory {memory_id} not found", "memory_id")
        return _memory(row)

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
        after = decode_cursor(cursor) if cursor else None
        with self.pool.transaction(user_id) as tx:
            rows = tx.execute(
                f"""
                SELECT {_COLUMNS} FROM memories m
                WHERE m.user_id = %s AND (%s::text IS NULL OR m.namespace = %s) AND {_ALIVE}
                  AND (%s::text IS NULL OR m.kind = %s)
                  AND (%s::timestamptz IS NULL OR (m.created_at, m.id) < (%s, %s::uuid))
                ORDER BY m.created_at DESC, m.id DESC
                LIMIT %s
                """,
                [
                    user_id,
                    namespace,
                    namespace,
                    kind,
                    kind,
                    after[0] if after else None,
                    after[0] if after else None,
                    after[1] if after else None,
                    limit + 1,
                ],
            )
        items = [_memory(row) for row in rows[:limit]]
        next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
        return Page(items, next_cursor)

    def history(self, user_id: str, memory_id: str) -> list[MemoryEvent]:
        """Every ADD/UPDATE/DELETE of one memory, oldest first; kept after deletion."""
        check_id(user_id, "user_id")
        memory_id = check_uuid(memory_id, "memory_id")
        with self.pool.transaction(user_id) as tx:
            rows = tx.execute(
                f"SELECT {_EVENT_COLUMNS} FROM memory_events "
                "WHERE user_id = %s AND memory_id = %s ORDER BY id",
                [user_id, memory_id],
            )
        if not rows:
            raise NotFound(f"memory {memory_id} not found", "memory_id")
        return [MemoryEvent(*row) for row in rows]

    def check_query(self, user_id: str, namespace: str, query: Any) -> None:
        check_id(user_id, "user_id")
        check_id(namespace, "namespace")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query must be a non-empty string", "q")
        if len(query) > self.limits.max_content_chars:
            raise InvalidInput(
                f"query is longer than {self.limits.max_content_chars} characters", "q"
            )

    def speakers(self, user_id: str, namespace: str, kind: Kind | None = None) -> list[str]:
        """The distinct ``metadata.speaker`` values among the user's live memories."""
        rows = self.pool.read(
            f"SELECT DISTINCT m.metadata->>'speaker' FROM memories m "
            f"WHERE m.user_id = %s AND m.namespace = %s AND (%s::text IS NULL OR m.kind = %s) "
            f"AND m.metadata ? 'speaker' AND {_ALIVE}",
            [user_id, namespace, kind, kind],
            user_id,
        )
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
        rows = self.pool.read(
            _RANK_SQL,
            [
                vector_text,
                lexical.query(lexical_text),
                user_id,
                namespace,
                "{}",
                kind,
                kind,
                candidates,
                scope_json,
                scope_json,
                candidates,
                candidates,
            ],  # fmt: skip
            user_id,
        )
        return [
            RankedMemory(
                memory=_memory(row[:_WIDTH]),
                vector_rank=row[_WIDTH],
                lexical_rank=row[_WIDTH + 1],
                scoped_rank=row[_WIDTH + 2],
                similarity=None if row[_WIDTH + 3] is None else float(row[_WIDTH + 3]),
            )
            for row in rows
        ]

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
            rows = self.pool.read(_search_sql(False), params(False), user_id)
        else:
            with self.pool.transaction(user_id) as tx:
                large = self._uses_ann(tx, user_id, namespace)
                if large:
                    tx.execute("SET LOCAL hnsw.iterative_scan = 'relaxed_order'")
                rows = tx.execute(_search_sql(large), params(large))
        hits = [
            SearchHit(
                memory=_memory(row[:_WIDTH]),
                vector_rank=row[_WIDTH],
                lexical_rank=row[_WIDTH + 1],
                similarity=None if row[_WIDTH + 2] is None else float(row[_WIDTH + 2]),
                score=float(row[_WIDTH + 3]) / _ideal_score(mode),
            )
            for row in rows
        ]
        self._access.record(hit.memory.id for hit in hits)
        return hits

    # ---- maintenance --------------------------------------------------------------------

    def flush_access_stats(self) -> int:
        """Write the batched hit counts from searches (called by the background loop)."""
        counts = self._access.take()
        if not counts:
            return 0
        ids, hits = zip(*counts.items())
        with self.jobs_pool.transaction() as tx:
            tx.execute(
                """
                UPDATE memories m SET access_count = m.access_count + h.n,
                    last_accessed_at = now()
                FROM unnest(%s::uuid[], %s::int[]) AS h(id, n) WHERE m.id = h.id
                """,
                [list(ids), list(hits)],
            )
        return len(ids)

    def count(self, user_id: str, namespace: str | None = None, kind: Kind | None = None) -> int:
        with self.pool.transaction(user_id) as tx:
            return int(
                tx.value(
                    f"SELECT count(*) FROM memories m WHERE m.user_id = %s "
                    f"AND (%s::text IS NULL OR m.namespace = %s) "
                    f"AND (%s::text IS NULL OR m.kind = %s) AND {_ALIVE}",
                    [user_id, namespace, namespace, kind, kind],
                )
            )

    # ---- internals ----------------------------------------------------------------------

    def _uses_ann(self, tx: Tx, user_id: str, namespace: str) -> bool:
        if not self.limits.hnsw_index:
            return False
        bounded = tx.value(
            "SELECT count(*) FROM (SELECT 1 FROM memories WHERE user_id = %s "
            "AND namespace = %s LIMIT %s) AS capped",
            [user_id, namespace, self.limits.hnsw_min_rows + 1],
        )
        return int(bounded) > self.limits.hnsw_min_rows

    def _lock_by_id(self, tx: Tx, user_id: str, memory_id: str) -> Memory | None:
        row = tx.one(
            f"SELECT {_COLUMNS} FROM memories m "
            f"WHERE m.id = %s AND m.user_id = %s AND {_ALIVE} FOR UPDATE",
            [memory_id, user_id],
        )
        return _memory(row) if row else None

    def _lock_by_key(self, tx: Tx, user_id: str, namespace: str, key: str) -> Memory | None:
        row = tx.one(
            f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = %s AND m.namespace = %s "
            f"AND m.key = %s AND {_ALIVE} FOR UPDATE",
            [user_id, namespace, key],
        )
        return _memory(row) if row else None

    def _update(
        self,
        tx: Tx,
        current: Memory,
        *,
        content: str,
        context: str,
        metadata: dict[str, Any],
        importance: float,
        observed_at: datetime | None,
        expires_at: datetime | None,
        actor: str,
        request_id: str | None,
    ) -> Written:
        text_changed = content != current.content or context != current.context
        if not text_changed and (metadata, importance, expires_at) == (
            current.metadata,
            current.importance,
            current.expires_at,
        ):
            return Written(current, "UNCHANGED")
        row = tx.one(
            f"""
            UPDATE memories AS m SET content = %s, context = %s, metadata = %s::jsonb,
                importance = %s, expires_at = %s,
                observed_at = CASE WHEN %s THEN COALESCE(%s, now()) ELSE m.observed_at END,
                tsv = to_tsvector('{lexical.TEXT_SEARCH_CONFIG}', %s),
                embedding = CASE WHEN %s THEN NULL ELSE m.embedding END,
                embedding_model = CASE WHEN %s THEN NULL ELSE m.embedding_model END,
                updated_at = now(), version = m.version + 1
            WHERE m.id = %s
            RETURNING {_COLUMNS}
            """,
            [
                content,
                context,
                json.dumps(metadata),
                importance,
                expires_at,
                text_changed,
                observed_at,
                lexical.document(content, context),
                text_changed,
                text_changed,
                current.id,
            ],
        )
        updated = _memory(row)
        record_event(tx, updated, "UPDATE", current, updated, actor, request_id)
        return Written(updated, "UPDATE")


def _insert(
    tx: Tx,
    *,
    user_id: str,
    namespace: str,
    key: str | None,
    content: str,
    context: str,
    metadata: dict[str, Any],
    importance: float,
    observed_at: datetime | None,
    expires_at: datetime | None,
    kind: Kind,
) -> Memory | None:
    """Insert a new memory; None when the key is taken. Keyless facts await dedup."""
    new_id = str(uuid.uuid4())
    row = tx.one(
        f"""
        INSERT INTO memories AS m (id, user_id, namespace, key, content, context, metadata,
            importance, tsv, dedup_pending, observed_at, expires_at, kind)
        VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s,
            to_tsvector('{lexical.TEXT_SEARCH_CONFIG}', %s), %s, COALESCE(%s, now()), %s, %s)
        ON CONFLICT (user_id, namespace, key) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        [
            new_id,
            user_id,
            namespace,
            key or new_id,
            content,
            context,
            json.dumps(metadata),
            importance,
            lexical.document(content, context),
            key is None and kind == "fact",
            observed_at,
            expires_at,
            kind,
        ],
    )
    return _memory(row) if row else None


def _retire_expired(
    tx: Tx, user_id: str, namespace: str, key: str, actor: str, request_id: str | None
) -> None:
    row = tx.one(
        f"DELETE FROM memories m WHERE m.user_id = %s AND m.namespace = %s AND m.key = %s "
        f"AND NOT {_ALIVE} RETURNING {_COLUMNS}",
        [user_id, namespace, key],
    )
    if row:
        expired = _memory(row)
        record_event(tx, expired, "DELETE", expired, None, "expiry", request_id)


def record_event(
    tx: Tx,
    memory: Memory,
    op: str,
    before: Memory | None,
    after: Memory | None,
    actor: str,
    request_id: str | None,
    merged_into: str | None = None,
) -> None:
    """Append one history row; an UPDATE or DELETE marks when the old text stopped being true."""
    tx.execute(
        """
        INSERT INTO memory_events (memory_id, user_id, namespace, key, op, old_content,
            new_content, old_context, new_context, version, actor, request_id,
            superseded_at, merged_into)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
            CASE WHEN %s THEN now() END, %s)
        """,
        [
            memory.id,
            memory.user_id,
            memory.namespace,
            memory.key,
            op,
            before.content if before else None,
            after.content if after else None,
            before.context if before else None,
            after.context if after else None,
            memory.version,
            actor,
            request_id,
            before is not None,
            merged_into,
        ],
    )


class AccessRecorder:
    """Counts search hits in memory; the background loop writes them in one statement."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, ids: Any) -> None:
        with self._lock:
            self._counts.update(ids)

    def take(self) -> dict[str, int]:
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts


# One user's namespace, narrowed by a metadata filter and a kind (NULL: every kind).
_SCOPE = (
    "m.user_id = %s AND m.namespace = %s AND m.metadata @> %s::jsonb "
    "AND (%s::text IS NULL OR m.kind = %s)"
)


def _ideal_score(mode: SearchMode) -> float:
    """The fused score of a memory ranked first by every ranking the mode uses, so scores
    read as 0-1 relevance: 1.0 is first everywhere, 0.5 first in one of two rankings."""
    return (2 if mode == "hybrid" else 1) / (RRF_K + 1)


def _search_sql(approximate: bool) -> str:
    # The user's rows are materialised first through the (user_id, namespace) btree, then
    # ranked exactly: the planner can never turn a per-user query into a global HNSW scan
    # with the user as a post-filter. Namespaces above HNSW_MIN_ROWS (when the index
    # exists) rank vectors through HNSW with pgvector's iterative scan instead.
    vector_source = (
        f"""SELECT m.id, m.importance, m.updated_at, m.embedding <=> q.v AS distance
            FROM memories m, q
            WHERE {_SCOPE} AND m.embedding IS NOT NULL AND {_ALIVE} AND q.v IS NOT NULL
            ORDER BY m.embedding <=> q.v LIMIT %s"""
        if approximate
        else """SELECT mine.id, mine.importance, mine.updated_at,
                mine.embedding <=> q.v AS distance
            FROM mine, q WHERE mine.embedding IS NOT NULL AND q.v IS NOT NULL
            ORDER BY mine.embedding <=> q.v LIMIT %s"""
    )
    # Each ranking carries the tie-breaking columns, so fusing them is one hash join of
    # two short lists (joining back to ``mine`` made the planner loop over 40 x 50 rows).
    # Equal fused scores are common (vector rank r alone = lexical rank r alone): the
    # closer vector match wins, so results do not depend on row order or random ids.
    return f"""
        WITH q AS (SELECT %s::vector AS v, to_tsquery('{lexical.TEXT_SEARCH_CONFIG}', %s) AS t),
        mine AS MATERIALIZED (
            SELECT m.id, m.embedding, m.tsv, m.importance, m.updated_at FROM memories m
            WHERE {_SCOPE} AND {_ALIVE}
        ),
        vec AS (
            SELECT id, importance, updated_at, 1 - distance AS similarity,
                row_number() OVER (ORDER BY distance) AS rank
            FROM ({vector_source}) AS nearest
        ),
        lex AS (
            SELECT mine.id, mine.importance, mine.updated_at,
                row_number() OVER (ORDER BY ts_rank_cd(mine.tsv, q.t) DESC) AS rank
            FROM mine, q WHERE q.t IS NOT NULL AND mine.tsv @@ q.t
            ORDER BY ts_rank_cd(mine.tsv, q.t) DESC LIMIT %s
        ),
        fused AS (  -- ranked and cut before fetching whole rows: 10 lookups, not 40
            SELECT COALESCE(vec.id, lex.id) AS id, vec.rank AS vector_rank,
                lex.rank AS lexical_rank, vec.similarity,
                COALESCE(1.0 / ({RRF_K} + vec.rank), 0)
                    + COALESCE(1.0 / ({RRF_K} + lex.rank), 0) AS score,
                COALESCE(vec.importance, lex.importance) AS importance,
                COALESCE(vec.updated_at, lex.updated_at) AS updated_at
            FROM vec FULL OUTER JOIN lex ON vec.id = lex.id
            ORDER BY score DESC, vector_rank, importance DESC, updated_at DESC, id
            LIMIT %s
        )
        SELECT {_COLUMNS}, fused.vector_rank, fused.lexical_rank, fused.similarity, fused.score
        FROM fused JOIN memories m ON m.id = fused.id
        ORDER BY fused.score DESC, fused.vector_rank, fused.importance DESC,
            fused.updated_at DESC, fused.id
    """


# The pipeline's candidates: each ranking is cut at its own top N before the union, so the
# pool never depends on the caller's limit; ties inside a ranking break on id.
_RANK_SQL = f"""
    WITH q AS (SELECT %s::vector AS v, to_tsquery('{lexical.TEXT_SEARCH_CONFIG}', %s) AS t),
    mine AS MATERIALIZED (
        SELECT m.id, m.embedding, m.tsv, m.metadata FROM memories m
        WHERE {_SCOPE} AND {_ALIVE}
    ),
    vec AS (
        SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM (
            SELECT mine.id, mine.embedding <=> q.v AS distance FROM mine, q
            WHERE mine.embedding IS NOT NULL AND q.v IS NOT NULL
            ORDER BY distance, mine.id LIMIT %s
        ) AS nearest
    ),
    scoped AS (
        SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM (
            SELECT mine.id, mine.embedding <=> q.v AS distance FROM mine, q
            WHERE %s::jsonb IS NOT NULL AND mine.metadata @> %s::jsonb
              AND mine.embedding IS NOT NULL AND q.v IS NOT NULL
            ORDER BY distance, mine.id LIMIT %s
        ) AS nearest
    ),
    lex AS (
        SELECT id, row_number() OVER (ORDER BY relevance DESC, id) AS rank FROM (
            SELECT mine.id, ts_rank_cd(mine.tsv, q.t) AS relevance FROM mine, q
            WHERE q.t IS NOT NULL AND mine.tsv @@ q.t
            ORDER BY relevance DESC, mine.id LIMIT %s
        ) AS matching
    ),
    pool AS (SELECT id FROM vec UNION SELECT id FROM lex UNION SELECT id FROM scoped)
    SELECT {_COLUMNS}, vec.rank, lex.rank, scoped.rank,
        1 - COALESCE(vec.distance, scoped.distance)
    FROM pool JOIN memories m ON m.id = pool.id
    LEFT JOIN vec ON vec.id = pool.id
    LEFT JOIN lex ON lex.id = pool.id
    LEFT JOIN scoped ON scoped.id = pool.id
"""


# ---- validation ---------------------------------------------------------------------------


def check_id(value: Any, name: str) -> str:
    """User ids, namespaces and keys: non-empty text without control characters.

    They are only ever compared with ``=`` in parameterised SQL, so ``%``, ``_``, quotes
    and backslashes are ordinary characters that match nothing but themselves.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must be a non-empty string", name)
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(f"{name} is longer than {MAX_ID_CHARS} characters", name)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{name} contains control characters", name)
    return value


def check_text(value: Any, name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", name)
    if len(value) > max_chars:
        raise InvalidInput(f"{name} is longer than {max_chars} characters", name)
    if "\x00" in value:
        raise InvalidInput(f"{name} contains a NUL character", name)
    return value


def check_content(value: Any, name: str, max_chars: int) -> str:
    value = check_text(value, name, max_chars).strip()
    if not value:
        raise InvalidInput(f"{name} must not be empty", name)
    return value


def check_metadata(value: Any, name: str = "metadata") -> None:
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", name)
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be JSON-serialisable", name) from None
    if len(encoded) > MAX_METADATA_BYTES or "\\u0000" in encoded:
        raise InvalidInput(f"{name} is larger than {MAX_METADATA_BYTES} bytes or has NUL", name)


def check_importance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidInput("importance must be a number between 0 and 1", "importance")
    # The column is a 4-byte real: values below its range (1e-300, say) would be refused.
    return round(float(value), 6)


def check_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # ISO 8601 from JSON; a zone-less time is taken as UTC
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{name} must be an ISO 8601 timestamp", name) from None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a timestamp", name)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_kind(value: Any, name: str = "kind") -> Kind:
    if value not in KINDS:
        raise InvalidInput(f"{name} must be one of {', '.join(KINDS)}", name)
    return value


def check_uuid(value: Any, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound(f"{name} {value!r} not found", name) from None


def check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 200:
        raise InvalidInput("limit must be an integer between 1 and 200", "limit")
    return value


def check_vector(vector: Any, dim: int, where: str) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise InvalidInput(
            f"{where}: embedding has shape {array.shape}, this deployment stores {dim} dims",
            "embedding",
        )
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{where}: embedding has non-finite values", "embedding")
    return array


def encode_cursor(memory: Memory) -> str:
    raw = f"{memory.created_at.isoformat()}|{memory.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, memory_id = base64.urlsafe_b64decode(padded).decode().split("|")
        return datetime.fromisoformat(created), str(uuid.UUID(memory_id))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this service issued", "cursor") from None


def _memory(row: Sequence[Any]) -> Memory:
    values = list(row)
    if isinstance(values[6], str):
        values[6] = json.loads(values[6])
    values[7] = float(values[7])
    return Memory(*values)
