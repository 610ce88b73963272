"""Every SQL statement of the memory store and of the dedup merge, by name.

Select lists are ``Columns`` (``records.MEMORY`` and ``records.EVENT`` are the records'
own): each expression under the name of the field it fills, so rows are read by name.
Statements are parameterised (``%s``); the only text put into them is fixed here (the
text search configuration, the fusion constant).
"""

from __future__ import annotations

from services import lexical
from services.memories.records import EVENT, MEMORY, Columns

RRF_K = 60  # the usual reciprocal-rank-fusion constant
_CONFIG = lexical.TEXT_SEARCH_CONFIG

ALIVE = "(m.expires_at IS NULL OR m.expires_at > now())"
# One user's namespace, narrowed by a metadata filter and a kind (NULL: every kind).
SCOPE = (
    "m.user_id = %s AND m.namespace = %s AND m.metadata @> %s::jsonb "
    "AND (%s::text IS NULL OR m.kind = %s)"
)

# ---- writes -----------------------------------------------------------------------------

INSERT = f"""
    INSERT INTO memories AS m (id, user_id, namespace, key, content, context, metadata,
        importance, tsv, dedup_pending, observed_at, expires_at, kind)
    VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s,
        to_tsvector('{_CONFIG}', %s), %s, COALESCE(%s, now()), %s, %s)
    ON CONFLICT (user_id, namespace, key) DO NOTHING
    RETURNING {MEMORY.sql}
"""
# The arrays ``add_many`` sends, one per column, and the SQL type of each.
BULK_ARRAYS = {
    "id": "uuid",
    "key": "text",
    "content": "text",
    "context": "text",
    "metadata": "text",
    "importance": "real",
    "doc": "text",
    "vec": "text",
    "observed_at": "timestamptz",
    "expires_at": "timestamptz",
    "kind": "text",
}
BULK_INSERTED = Columns(
    {
        "id": "id::text",
        "key": "key",
        "content": "content",
        "context": "context",
        "version": "version",
    }
)
BULK_INSERT = f"""
    INSERT INTO memories (id, user_id, namespace, key, content, context, metadata,
        importance, tsv, embedding, embedding_model, observed_at, expires_at, kind)
    SELECT r.id, %s, %s, r.key, r.content, r.context, r.metadata::jsonb,
        r.importance, to_tsvector('{_CONFIG}', r.doc),
        r.vec::vector, CASE WHEN r.vec IS NULL THEN NULL ELSE %s END,
        COALESCE(r.observed_at, now()), r.expires_at, r.kind
    FROM unnest({", ".join(f"%s::{kind}[]" for kind in BULK_ARRAYS.values())})
        AS r({", ".join(BULK_ARRAYS)})
    ON CONFLICT (user_id, namespace, key) DO NOTHING
    RETURNING {BULK_INSERTED.sql}
"""
BULK_EVENTS = """
    INSERT INTO memory_events (memory_id, user_id, namespace, key, op,
        new_content, new_context, version, actor, request_id)
    SELECT r.id, %s, %s, r.key, 'ADD', r.content, r.context, r.version, %s, %s
    FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::int[])
        AS r(id, key, content, context, version)
"""
UPDATE = f"""
    UPDATE memories AS m SET content = %s, context = %s, metadata = %s::jsonb,
        importance = %s, expires_at = %s,
        observed_at = CASE WHEN %s THEN COALESCE(%s, now()) ELSE m.observed_at END,
        tsv = to_tsvector('{_CONFIG}', %s),
        embedding = CASE WHEN %s THEN NULL ELSE m.embedding END,
        embedding_model = CASE WHEN %s THEN NULL ELSE m.embedding_model END,
        updated_at = now(), version = m.version + 1
    WHERE m.id = %s
    RETURNING {MEMORY.sql}
"""
DELETE = "DELETE FROM memories WHERE id = %s"
RETIRE_EXPIRED = (
    f"DELETE FROM memories m WHERE m.user_id = %s AND m.namespace = %s AND m.key = %s "
    f"AND NOT {ALIVE} RETURNING {MEMORY.sql}"
)
RECORD_EVENT = """
    INSERT INTO memory_events (memory_id, user_id, namespace, key, op, old_content,
        new_content, old_context, new_context, version, actor, request_id,
        superseded_at, merged_into)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        CASE WHEN %s THEN now() END, %s)
"""
FLUSH_ACCESS = """
    UPDATE memories m SET access_count = m.access_count + h.n,
        last_accessed_at = now()
    FROM unnest(%s::uuid[], %s::int[]) AS h(id, n) WHERE m.id = h.id
"""

# ---- reads ------------------------------------------------------------------------------

GET = f"SELECT {MEMORY.sql} FROM memories m WHERE m.id = %s AND m.user_id = %s AND {ALIVE}"
LOCK_BY_ID = f"{GET} FOR UPDATE"
LOCK_BY_KEY = (
    f"SELECT {MEMORY.sql} FROM memories m WHERE m.user_id = %s AND m.namespace = %s "
    f"AND m.key = %s AND {ALIVE} FOR UPDATE"
)
MERGED_INTO = (
    "SELECT merged_into::text FROM memory_events WHERE user_id = %s "
    "AND memory_id = %s AND merged_into IS NOT NULL ORDER BY id DESC LIMIT 1"
)
LIST = f"""
    SELECT {MEMORY.sql} FROM memories m
    WHERE m.user_id = %s AND (%s::text IS NULL OR m.namespace = %s) AND {ALIVE}
      AND (%s::text IS NULL OR m.kind = %s)
      AND (%s::timestamptz IS NULL OR (m.created_at, m.id) < (%s, %s::uuid))
    ORDER BY m.created_at DESC, m.id DESC
    LIMIT %s
"""
HISTORY = f"SELECT {EVENT.sql} FROM memory_events WHERE user_id = %s AND memory_id = %s ORDER BY id"
SPEAKERS = (
    f"SELECT DISTINCT m.metadata->>'speaker' FROM memories m "
    f"WHERE m.user_id = %s AND m.namespace = %s AND (%s::text IS NULL OR m.kind = %s) "
    f"AND m.metadata ? 'speaker' AND {ALIVE}"
)
COUNT = (
    f"SELECT count(*) FROM memories m WHERE m.user_id = %s "
    f"AND (%s::text IS NULL OR m.namespace = %s) "
    f"AND (%s::text IS NULL OR m.kind = %s) AND {ALIVE}"
)
COUNT_UP_TO = (
    "SELECT count(*) FROM (SELECT 1 FROM memories WHERE user_id = %s "
    "AND namespace = %s LIMIT %s) AS capped"
)

# ---- rankings ---------------------------------------------------------------------------

# Both rankings start the same way: the query as a vector and as a tsquery, then the user's
# rows materialised first through the (user_id, namespace) btree and ranked exactly, so the
# planner can never turn a per-user query into a global HNSW scan with the user as a
# post-filter.
# MATERIALIZED: computed once, never inlined into a per-row expression (a generic plan
# would otherwise run to_tsquery on every row of the user's).
_QUERY = f"q AS MATERIALIZED (SELECT %s::vector AS v, to_tsquery('{_CONFIG}', %s) AS t)"


def _mine(columns: str) -> str:
    return f"mine AS MATERIALIZED (SELECT {columns} FROM memories m WHERE {SCOPE} AND {ALIVE})"


SEARCH_ROW = MEMORY + {
    "vector_rank": "fused.vector_rank",
    "lexical_rank": "fused.lexical_rank",
    "similarity": "fused.similarity",
    "score": "fused.score",
}


def ideal_score(mode: str) -> float:
    """The fused score of a memory ranked first by every ranking the mode uses, so scores
    read as 0-1 relevance: 1.0 is first everywhere, 0.5 first in one of two rankings."""
    return (2 if mode == "hybrid" else 1) / (RRF_K + 1)


def search(approximate: bool) -> str:
    # Namespaces above HNSW_MIN_ROWS (when the index exists) rank vectors through HNSW with
    # pgvector's iterative scan instead of exactly over ``mine``.
    vector_source = (
        f"""SELECT m.id, m.importance, m.updated_at, m.embedding <=> q.v AS distance
            FROM memories m, q
            WHERE {SCOPE} AND m.embedding IS NOT NULL AND {ALIVE} AND q.v IS NOT NULL
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
        WITH {_QUERY},
        {_mine("m.id, m.embedding, m.tsv, m.importance, m.updated_at")},
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
        SELECT {SEARCH_ROW.sql}
        FROM fused JOIN memories m ON m.id = fused.id
        ORDER BY fused.score DESC, fused.vector_rank, fused.importance DESC,
            fused.updated_at DESC, fused.id
    """


RANK_ROW = MEMORY + {
    "vector_rank": "pool.vector_rank",
    "lexical_rank": "pool.lexical_rank",
    "scoped_rank": "pool.scoped_rank",
    "similarity": "1 - pool.distance",
}
# The pipeline's candidates: each ranking is cut at its own top N before the union, so the
# pool never depends on the caller's limit; ties inside a ranking break on id. The user's
# rows are read once and reduced to what the rankings sort on (a distance, a text relevance,
# whether the scope matches), so neither vectors nor tsvectors are copied into the CTE and
# each is read once; whole rows are fetched only for the pool.
RANK = f"""
    WITH {_QUERY},
    mine AS MATERIALIZED (
        SELECT m.id, m.embedding <=> q.v AS distance,
            CASE WHEN m.tsv @@ q.t THEN ts_rank_cd(m.tsv, q.t) END AS relevance,
            COALESCE(m.metadata @> %s::jsonb, false) AS in_scope
        FROM memories m, q WHERE {SCOPE} AND {ALIVE}
    ),
    vec AS (
        SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM (
            SELECT id, distance FROM mine WHERE distance IS NOT NULL
            ORDER BY distance, id LIMIT %s
        ) AS nearest
    ),
    scoped AS (
        SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM (
            SELECT id, distance FROM mine WHERE in_scope AND distance IS NOT NULL
            ORDER BY distance, id LIMIT %s
        ) AS nearest
    ),
    lex AS (
        SELECT id, row_number() OVER (ORDER BY relevance DESC, id) AS rank FROM (
            SELECT id, relevance FROM mine WHERE relevance IS NOT NULL
            ORDER BY relevance DESC, id LIMIT %s
        ) AS matching
    ),
    pool AS (
        SELECT id, min(vector_rank) AS vector_rank, min(lexical_rank) AS lexical_rank,
            min(scoped_rank) AS scoped_rank, min(distance) AS distance
        FROM (
            SELECT id, rank AS vector_rank, NULL::bigint AS lexical_rank,
                NULL::bigint AS scoped_rank, distance FROM vec
            UNION ALL SELECT id, NULL, rank, NULL, NULL FROM lex
            UNION ALL SELECT id, NULL, NULL, rank, distance FROM scoped
        ) AS ranked GROUP BY id
    )
    SELECT {RANK_ROW.sql}
    FROM pool JOIN memories m ON m.id = pool.id
"""

# ---- dedup ------------------------------------------------------------------------------

PENDING_ROW = MEMORY.only(
    "id", "user_id", "namespace", "content", "context", "metadata", "observed_at",
    "created_at", "expires_at", "importance",
)  # fmt: skip
PENDING = f"""
    SELECT {PENDING_ROW.sql}
    FROM memories m WHERE m.id = ANY(%s::uuid[])
      AND m.dedup_pending AND m.embedding IS NOT NULL
    ORDER BY m.created_at, m.id
"""
CLEAR_PENDING = "UPDATE memories SET dedup_pending = false WHERE id = %s"
NEIGHBOUR_ROW = Columns(
    {
        "id": "mine.id::text",
        "similarity": "1 - (mine.embedding <=> self.embedding)",
        "content": "mine.content",
        "metadata": "mine.metadata",
    }
)
# The nearest older live facts of the same user and namespace. The user's rows are
# materialised first (the per-user btree), as in search, so this never becomes a global
# vector scan.
NEIGHBOURS = f"""
    WITH mine AS MATERIALIZED (
        SELECT m.id, m.embedding, m.created_at, m.content, m.metadata FROM memories m
        WHERE m.user_id = %s AND m.namespace = %s AND m.id <> %s AND m.kind = 'fact'
          AND m.embedding IS NOT NULL AND {ALIVE}
    )
    SELECT {NEIGHBOUR_ROW.sql}
    FROM mine, memories self
    WHERE self.id = %s AND (mine.created_at, mine.id) < (self.created_at, self.id)
      AND 1 - (mine.embedding <=> self.embedding) >= %s
    ORDER BY mine.embedding <=> self.embedding
    LIMIT %s
"""
FOLDED_ROW = MEMORY.only("id", "user_id", "namespace", "key", "content", "context", "version")
FOLD = f"""
    UPDATE memories AS m SET metadata = %s::jsonb,
        importance = GREATEST(m.importance, %s),
        expires_at = CASE WHEN m.expires_at IS NULL OR %s::timestamptz IS NULL THEN NULL
                          ELSE GREATEST(m.expires_at, %s::timestamptz) END,
        updated_at = now(), version = m.version + 1
    WHERE m.id = %s
    RETURNING {FOLDED_ROW.sql}
"""
DELETE_MERGED = "DELETE FROM memories WHERE id = %s RETURNING key, version"
MERGE_EVENT = """
    INSERT INTO memory_events (memory_id, user_id, namespace, key, op, old_content,
        new_content, old_context, new_context, version, actor, merged_into)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'merge', %s)
"""
