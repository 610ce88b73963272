"""Retention: per-user policy, the daily sweep, and archive restore.

Policy (``RetentionPolicy``): defaults from Settings (``RETENTION_*``), overridable per user
in ``retention_policies`` through ``set_policy`` / ``get_policy``. 0 means never/unlimited.

- memories past ``expires_at`` are deleted;
- memories not rewritten for ``max_age_days`` are deleted unless their importance is at or
  above ``importance_floor``;
- a user above ``max_count`` memories loses the lowest-valued ones (importance, then
  recency of use, then access count);
- memories neither used nor rewritten for ``archive_after_days`` (and below the floor) are
  written to the archive as JSONL and removed from the hot table; ``restore_archived``
  brings them back with their ids, keys, history and (same model) vectors;
- threads idle for ``thread_idle_days`` are deleted with their messages and Redis copy;
- pending deletion requests are carried out first (``services.privacy``), and the Redis
  copies of deleted threads that Redis could not drop at the time are deleted.

Every memory removed or restored writes a ``memory_events`` row (actor ``retention:<why>``).
The sweep visits users in ``user_id`` order, a bounded chunk per transaction; the cursor is
kept in ``retention_state``, so a run cut short by its time budget (or killed) resumes
where it stopped, and two overlapping runs take turns chunk by chunk instead of
repeating work. Row locks last one chunk, so chat is never blocked for long.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from services import lexical
from services.archive import Archive, user_prefix
from services.config import Settings
from services.db import Pool, Tx
from services.errors import InvalidInput
from services.memories.validation import check_id, check_uuid
from services.privacy import process_deletion_requests
from services.threads import ThreadStore, remember_purges, retry_cache_purges

log = logging.getLogger(__name__)

JOB = "retention"


# ---- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_days: int = 0
    max_count: int = 10000
    importance_floor: float = 0.8
    archive_after_days: int = 180
    thread_idle_days: int = 90


POLICY_FIELDS = tuple(f.name for f in fields(RetentionPolicy))
_MAX_DAYS = 36500


def default_policy(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        max_age_days=settings.retention_max_age_days,
        max_count=settings.retention_max_count,
        importance_floor=settings.retention_importance_floor,
        archive_after_days=settings.retention_archive_after_days,
        thread_idle_days=settings.retention_thread_idle_days,
    )


def get_policy(pool: Pool, defaults: RetentionPolicy, user_id: str) -> RetentionPolicy:
    """The policy in force for ``user_id``: the user's overrides over the defaults."""
    check_id(user_id, "user_id")
    with pool.transaction(user_id) as tx:
        return _policies(tx, defaults, [user_id])[user_id]


def get_policy_overrides(pool: Pool, user_id: str) -> dict[str, int | float]:
    """Only the fields this user has set (what the API shows as 'customised')."""
    check_id(user_id, "user_id")
    with pool.transaction(user_id) as tx:
        row = tx.one(
            f"SELECT {', '.join(POLICY_FIELDS)} FROM retention_policies WHERE user_id = %s",
            [user_id],
        )
    if row is None:
        return {}
    return {name: _number(value) for name, value in zip(POLICY_FIELDS, row) if value is not None}


def set_policy(
    pool: Pool, defaults: RetentionPolicy, user_id: str, changes: Mapping[str, Any]
) -> RetentionPolicy:
    """Override some fields for one user (``None`` resets a field to the default).

    Unknown fields and out-of-range values raise InvalidInput naming the field; nothing is
    written then. Returns the policy now in force.
    """
    check_id(user_id, "user_id")
    clean = {name: _check_policy_value(name, value) for name, value in changes.items()}
    if clean:
        columns = list(clean)
        with pool.transaction(user_id) as tx:
            tx.execute(
                f"""
                INSERT INTO retention_policies AS p (user_id, {", ".join(columns)})
                VALUES (%s, {", ".join(["%s"] * len(columns))})
                ON CONFLICT (user_id) DO UPDATE SET
                    {", ".join(f"{c} = EXCLUDED.{c}" for c in columns)}, updated_at = now()
                """,
                [user_id, *clean.values()],
            )
            tx.execute(
                "DELETE FROM retention_policies WHERE user_id = %s AND "
                + " AND ".join(f"{c} IS NULL" for c in POLICY_FIELDS),
                [user_id],
            )
    return get_policy(pool, defaults, user_id)


def _check_policy_value(name: str, value: Any) -> int | float | None:
    if name not in POLICY_FIELDS:
        raise InvalidInput(f"unknown retention setting {name!r}", name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name} must be a number", name)
    if name == "importance_floor":
        if not 0 <= value <= 1.01:
            raise InvalidInput("importance_floor must be between 0 and 1.01 (none)", name)
        return float(value)
    if not isinstance(value, int) or not 0 <= value <= (_MAX_DAYS if "days" in name else 10**7):
        raise InvalidInput(f"{name} must be a non-negative integer (0: never)", name)
    return value


def _policies(tx: Tx, defaults: RetentionPolicy, user_ids: Sequence[str]) -> dict:
    rows = tx.execute(
        f"SELECT user_id, {', '.join(POLICY_FIELDS)} FROM retention_policies "
        "WHERE user_id = ANY(%s::text[])",
        [list(user_ids)],
    )
    overrides = {row[0]: row[1:] for row in rows}
    out = {}
    for user_id in user_ids:
        values = asdict(defaults)
        for name, value in zip(POLICY_FIELDS, overrides.get(user_id, ())):
            if value is not None:
                values[name] = _number(value)
        out[user_id] = RetentionPolicy(**values)
    return out


def _number(value: Any) -> int | float:
    return value if isinstance(value, int) else float(value)


# ---- the sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionJob:
    """What one sweep needs; built from the Runtime by the function handler."""

    pool: Pool
    archive: Archive
    threads: ThreadStore
    defaults: RetentionPolicy
    embedding_model: str
    batch_users: int = 200
    clock: Callable[[], float] = time.monotonic
    # After each chunk, rest for pause_ratio x the chunk's duration: the sweep then takes at
    # most 1/(1+ratio) of a core, leaving the rest to chat (a daily job can afford it).
    pause_ratio: float = 1.0
    sleep: Callable[[float], None] = time.sleep


@dataclass
class RetentionReport:
    counts: Counter = field(default_factory=Counter)
    chunks: int = 0
    users: int = 0
    complete: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "chunks": self.chunks,
            "users": self.users,
            "seconds": round(self.seconds, 3),
            "counts": dict(sorted(self.counts.items())),
        }


@dataclass(frozen=True)
class ChunkResult:
    users: list[str]
    counts: Counter
    purged_threads: list[tuple[str, str]]


def run_retention(
    job: RetentionJob,
    *,
    budget_seconds: float,
    now: datetime | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> RetentionReport:
    """One bounded run: deletion requests, then chunks of users until done or out of time.

    ``now`` overrides the database clock for the policy arithmetic (tests, backfills).
    ``progress(users, None)`` is told after each chunk (a command's progress bar).
    ``complete`` is true when the sweep reached the last user and no request is pending.
    """
    started = job.clock()
    deadline = started + budget_seconds
    report = RetentionReport()
    with job.pool.transaction() as tx:
        run_id = tx.value("INSERT INTO retention_runs DEFAULT VALUES RETURNING id")
    erased, failed = process_deletion_requests(
        job.pool, job.threads.redis, job.archive, deadline=deadline, clock=job.clock
    )
    report.counts.update({"deletion_requests.done": erased, "deletion_requests.failed": failed})
    purged, purges_left = retry_cache_purges(job.pool, job.threads.redis)
    report.counts.update({"cache_purges.done": purged, "cache_purges.pending": purges_left})
    pass_done = False
    while job.clock() < deadline:
        chunk_started = time.perf_counter()
        chunk = sweep_chunk(job, now)
        if chunk is None:
            pass_done = True
            break
        report.chunks += 1
        report.users += len(chunk.users)
        report.counts.update(chunk.counts)
        report.counts["redis_keys_deleted"] += _drop_hot_copies(job, chunk.purged_threads)
        if progress is not None:
            progress(report.users, None)
        if job.pause_ratio > 0:
            job.sleep((time.perf_counter() - chunk_started) * job.pause_ratio)
    report.complete = pass_done and failed == 0 and _pending_requests(job.pool) == 0
    report.seconds = job.clock() - started
    report.counts = Counter({k: v for k, v in report.counts.items() if v})
    with job.pool.transaction() as tx:
        tx.execute(
            "UPDATE retention_runs SET finished_at = now(), complete = %s, counts = %s::jsonb "
            "WHERE id = %s",
            [report.complete, json.dumps(report.as_dict()), run_id],
        )
    log.info("retention run %s: %s", run_id, json.dumps(report.as_dict()))
    return report


def sweep_chunk(job: RetentionJob, now: datetime | None = None) -> ChunkResult | None:
    """Apply the policy to the next chunk of users; None when the pass is complete."""
    with job.pool.transaction() as tx:
        tx.execute(
            "INSERT INTO retention_state (job, pass_started_at) VALUES (%s, now()) "
            "ON CONFLICT (job) DO NOTHING",
            [JOB],
        )
        # The state row's lock makes overlapping runs take turns, chunk by chunk.
        cursor = tx.value("SELECT cursor FROM retention_state WHERE job = %s FOR UPDATE", [JOB])
        users = _next_users(tx, cursor, job.batch_users)
        if not users:
            tx.execute(
                "UPDATE retention_state SET cursor = '', last_pass_completed_at = now(), "
                "pass_started_at = NULL, updated_at = now() WHERE job = %s",
                [JOB],
            )
            return None
        policies = _policies(tx, job.defaults, users)
        arrays = _policy_arrays(users, policies)
        counts: Counter = Counter()
        for actor in tx.execute(_DELETE_SQL, [now, *arrays]):
            counts[f"memories.{actor[0]}"] += 1
        purged = [(row[0], row[1]) for row in tx.execute(_PURGE_THREADS_SQL, [now, *arrays])]
        counts["threads.purged"] += len(purged)
        counts["memories.retention:archive"] += _archive_cold(tx, job, arrays, now)
        tx.execute(
            "UPDATE retention_state SET cursor = %s, "
            "pass_started_at = COALESCE(pass_started_at, now()), updated_at = now() "
            "WHERE job = %s",
            [users[-1], JOB],
        )
    return ChunkResult(users, counts, purged)


def _pending_requests(pool: Pool) -> int:
    with pool.transaction() as tx:
        return int(tx.value("SELECT count(*) FROM deletion_requests WHERE status = 'pending'"))


def _next_users(tx: Tx, cursor: str, limit: int) -> list[str]:
    # A loose index scan over each table's user_id btree: one index probe per user, so a
    # chunk costs the same however many rows the users have or how big the tables are.
    rows = tx.execute(
        f"""
        WITH RECURSIVE {_skip_scan("mu", "memories")}, {_skip_scan("tu", "threads")},
        picked AS (
            (SELECT user_id FROM mu WHERE user_id IS NOT NULL LIMIT %s)
            UNION
            (SELECT user_id FROM tu WHERE user_id IS NOT NULL LIMIT %s)
        )
        SELECT user_id FROM picked ORDER BY user_id LIMIT %s
        """,
        [cursor, cursor, limit, limit, limit],
    )
    return [row[0] for row in rows]


def _skip_scan(name: str, table: str) -> str:
    return f"""{name}(user_id) AS (
            (SELECT user_id FROM {table} WHERE user_id > %s ORDER BY user_id LIMIT 1)
            UNION ALL
            SELECT (SELECT t.user_id FROM {table} t WHERE t.user_id > {name}.user_id
                    ORDER BY t.user_id LIMIT 1)
            FROM {name} WHERE {name}.user_id IS NOT NULL
        )"""


def _policy_arrays(users: list[str], policies: dict) -> list[list]:
    return [
        users,
        [policies[u].max_age_days for u in users],
        [policies[u].max_count for u in users],
        [policies[u].importance_floor for u in users],
        [policies[u].archive_after_days for u in users],
        [policies[u].thread_idle_days for u in users],
    ]


_POLICY_CTE = """
    clock AS (SELECT COALESCE(%s::timestamptz, now()) AS now),
    pol AS (
        SELECT * FROM unnest(%s::text[], %s::int[], %s::int[], %s::real[], %s::int[],
            %s::int[]) AS p(user_id, max_age_days, max_count, importance_floor,
            archive_after_days, thread_idle_days)
    )"""

_DELETE_SQL = f"""
WITH {_POLICY_CTE},
cand AS (
    SELECT m.id, m.user_id, m.importance, m.access_count, pol.max_count,
        GREATEST(m.updated_at, m.last_accessed_at) AS used_at,
        CASE
            WHEN m.expires_at IS NOT NULL AND m.expires_at <= clock.now THEN 'expired'
            WHEN pol.max_age_days > 0 AND m.importance < pol.importance_floor
                 AND m.updated_at < clock.now - make_interval(days => pol.max_age_days)
                THEN 'max_age'
        END AS reason
    FROM pol JOIN memories m ON m.user_id = pol.user_id CROSS JOIN clock
),
over AS (  -- only users above their max_count are ranked (a sort of every row is costly)
    SELECT user_id FROM cand WHERE reason IS NULL AND max_count > 0
    GROUP BY user_id, max_count HAVING count(*) > max_count
),
ranked AS (
    SELECT c.id, c.max_count, row_number() OVER (
        PARTITION BY c.user_id
        ORDER BY c.importance DESC, c.used_at DESC, c.access_count DESC, c.id
    ) AS rank
    FROM cand c JOIN over o ON o.user_id = c.user_id WHERE c.reason IS NULL
),
doomed AS (
    SELECT id, reason FROM cand WHERE reason IS NOT NULL
    UNION ALL
    SELECT id, 'max_count' FROM ranked WHERE max_count > 0 AND rank > max_count
),
gone AS (
    DELETE FROM memories m USING doomed d WHERE m.id = d.id
    RETURNING m.id, m.user_id, m.namespace, m.key, m.content, m.context, m.version, d.reason
)
INSERT INTO memory_events (memory_id, user_id, namespace, key, op, old_content, old_context,
    version, actor, superseded_at)
SELECT g.id, g.user_id, g.namespace, g.key, 'DELETE', g.content, g.context, g.version,
    'retention:' || g.reason, clock.now
FROM gone g CROSS JOIN clock
RETURNING actor
"""

_PURGE_THREADS_SQL = f"""
WITH {_POLICY_CTE}
DELETE FROM threads t USING pol, clock
WHERE t.user_id = pol.user_id AND pol.thread_idle_days > 0
  AND t.updated_at < clock.now - make_interval(days => pol.thread_idle_days)
RETURNING t.user_id, t.thread_id
"""

_ARCHIVE_COLUMNS = (
    "id", "user_id", "namespace", "key", "content", "context", "metadata", "importance",
    "embedding", "embedding_model", "observed_at", "created_at", "updated_at",
    "last_accessed_at", "access_count", "expires_at", "version", "kind",
)  # fmt: skip

_COLD_SQL = f"""
WITH {_POLICY_CTE}
SELECT m.id::text, m.user_id, m.namespace, m.key, m.content, m.context, m.metadata,
    m.importance, m.embedding::text, m.embedding_model, m.observed_at, m.created_at,
    m.updated_at, m.last_accessed_at, m.access_count, m.expires_at, m.version, m.kind
FROM pol JOIN memories m ON m.user_id = pol.user_id CROSS JOIN clock
WHERE pol.archive_after_days > 0 AND m.importance < pol.importance_floor
  AND GREATEST(m.updated_at, m.last_accessed_at)
      < clock.now - make_interval(days => pol.archive_after_days)
  AND (m.expires_at IS NULL OR m.expires_at > clock.now)
ORDER BY m.user_id, m.id
FOR UPDATE OF m SKIP LOCKED
"""


def _archive_cold(tx: Tx, job: RetentionJob, arrays: list[list], now: datetime | None) -> int:
    """Write cold memories to the archive (one object per user), then drop them.

    The object is written while the rows are locked and before the commit: if the commit
    fails the object is an orphan under the user's prefix (erasure still finds it), never
    a memory lost.
    """
    rows = tx.execute(_COLD_SQL, [now, *arrays])
    if not rows:
        return 0
    by_user: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        record = {name: _plain(name, value) for name, value in zip(_ARCHIVE_COLUMNS, row)}
        by_user.setdefault(record["user_id"], []).append(record)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    index: list[tuple[str, str, str, str, str]] = []
    for user_id, records in by_user.items():
        name = f"{user_prefix(user_id)}{stamp}-{uuid.uuid4().hex[:12]}.jsonl"
        job.archive.write(name, records)
        index.extend((r["id"], user_id, r["namespace"], r["key"], name) for r in records)
    ids, users, namespaces, keys, names = (list(column) for column in zip(*index))
    tx.execute(
        "INSERT INTO archived_memories (memory_id, user_id, namespace, key, object_name) "
        "SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "ON CONFLICT (memory_id) DO UPDATE SET object_name = EXCLUDED.object_name, "
        "archived_at = now()",
        [ids, users, namespaces, keys, names],
    )
    tx.execute(
        """
        WITH gone AS (
            DELETE FROM memories m WHERE m.id = ANY(%s::uuid[])
            RETURNING m.id, m.user_id, m.namespace, m.key, m.content, m.context, m.version
        )
        INSERT INTO memory_events (memory_id, user_id, namespace, key, op, old_content,
            old_context, version, actor)
        SELECT id, user_id, namespace, key, 'DELETE', content, context, version,
            'retention:archive'
        FROM gone
        """,
        [ids],
    )
    return len(ids)


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if name == "metadata" and isinstance(value, str):
        return json.loads(value)
    if name == "importance":
        return float(value)
    return value


def _drop_hot_copies(job: RetentionJob, purged: list[tuple[str, str]]) -> int:
    threads = job.threads
    if threads.redis is None or not purged:
        return 0
    keys = [(u, threads._key(u, t)) for u, t in purged]
    try:
        return int(threads.redis.delete(*[key for _, key in keys]))
    except Exception as error:  # remembered: deleted once Redis is back
        log.warning("could not delete %d Redis thread copies: %s", len(purged), error)
        with job.pool.transaction() as tx:
            remember_purges(tx, keys)
        return 0


# ---- archive: list and restore --------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedMemory:
    memory_id: str
    namespace: str
    key: str
    archived_at: datetime


@dataclass(frozen=True)
class Restored:
    restored: list[str]
    conflicts: list[str]  # their key is taken by a newer memory; they stay archived
    missing: list[str]  # not archived (never, already restored, or erased)


def list_archived(pool: Pool, user_id: str, limit: int = 200) -> list[ArchivedMemory]:
    check_id(user_id, "user_id")
    with pool.transaction(user_id) as tx:
        rows = tx.execute(
            "SELECT memory_id::text, namespace, key, archived_at FROM archived_memories "
            "WHERE user_id = %s ORDER BY archived_at DESC, memory_id LIMIT %s",
            [user_id, limit],
        )
    return [ArchivedMemory(*row) for row in rows]


def restore_archived(
    pool: Pool,
    archive: Archive,
    user_id: str,
    embedding_model: str,
    memory_ids: Sequence[str] | None = None,
    *,
    actor: str = "retention:restore",
    request_id: str | None = None,
) -> Restored:
    """Bring archived memories of ``user_id`` back (all, or the given ids).

    They return with their id, key, content, metadata and timestamps, marked as just used
    (so the next sweep does not archive them again), with their vector if it was made by
    the current model (else they wait in the embedding outbox). A memory whose key was
    reused meanwhile stays archived and is reported as a conflict.
    """
    check_id(user_id, "user_id")
    wanted = None if memory_ids is None else [check_uuid(i, "memory_id") for i in memory_ids]
    with pool.transaction(user_id) as tx:
        index = tx.execute(
            "SELECT memory_id::text, object_name FROM archived_memories WHERE user_id = %s "
            "AND (%s::uuid[] IS NULL OR memory_id = ANY(%s::uuid[])) ORDER BY memory_id "
            "FOR UPDATE",
            [user_id, wanted, wanted],
        )
        objects: dict[str, set[str]] = {}
        for memory_id, name in index:
            objects.setdefault(name, set()).add(memory_id)
        records = [
            record
            for name, ids in objects.items()
            for record in archive.read(name)
            if record.get("id") in ids and record.get("user_id") == user_id
        ]
        restored = _reinsert(tx, records, embedding_model, actor, request_id)
        if restored:
            tx.execute(
                "DELETE FROM archived_memories WHERE memory_id = ANY(%s::uuid[])", [restored]
            )
        still_archived = {
            row[0]
            for row in tx.execute(
                "SELECT object_name FROM archived_memories WHERE object_name = ANY(%s::text[])",
                [list(objects)],
            )
        }
    done = set(restored)
    for name in objects:  # after the commit: the archive never loses a memory
        try:
            if name in still_archived:
                keep = [r for r in archive.read(name) if r.get("id") not in done]
                archive.write(name, keep)
            else:
                archive.delete(name)
        except Exception as error:  # stale lines are ignored: the index is the truth
            log.warning("could not tidy archive object %s: %s", name, error)
    found = {record["id"] for record in records}
    indexed = {memory_id for memory_id, _ in index}
    return Restored(
        restored=sorted(done),
        conflicts=sorted(found - done),
        missing=sorted(set(wanted or []) - indexed) + sorted(indexed - found),
    )


def _reinsert(
    tx: Tx,
    records: list[dict[str, Any]],
    embedding_model: str,
    actor: str,
    request_id: str | None,
) -> list[str]:
    if not records:
        return []

    def column(name: str) -> list[Any]:
        return [r.get(name) for r in records]

    same_model = [r.get("embedding_model") == embedding_model for r in records]
    rows = tx.execute(
        f"""
        WITH r AS (
            SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::real[], %s::text[], %s::text[], %s::timestamptz[],
                %s::timestamptz[], %s::timestamptz[], %s::int[], %s::timestamptz[],
                %s::int[], %s::text[], %s::text[])
            AS r(id, namespace, key, content, context, metadata, importance, embedding,
                 embedding_model, observed_at, created_at, updated_at, access_count,
                 expires_at, version, doc, kind)
        ),
        back AS (
            INSERT INTO memories (id, user_id, namespace, key, content, context, metadata,
                importance, embedding, embedding_model, tsv, observed_at, created_at,
                updated_at, last_accessed_at, access_count, expires_at, version, kind)
            SELECT r.id, %s, r.namespace, r.key, r.content, r.context, r.metadata::jsonb,
                r.importance, r.embedding::vector, r.embedding_model,
                to_tsvector('{lexical.TEXT_SEARCH_CONFIG}', r.doc), r.observed_at,
                r.created_at, r.updated_at, now(), r.access_count, r.expires_at,
                r.version + 1, COALESCE(r.kind, 'fact')
            FROM r
            ON CONFLICT DO NOTHING
            RETURNING id, user_id, namespace, key, content, context, version
        )
        INSERT INTO memory_events (memory_id, user_id, namespace, key, op, new_content,
            new_context, version, actor, request_id)
        SELECT id, user_id, namespace, key, 'ADD', content, context, version, %s, %s
        FROM back
        RETURNING memory_id::text
        """,
        [
            column("id"),
            column("namespace"),
            column("key"),
            column("content"),
            column("context"),
            [json.dumps(r.get("metadata") or {}) for r in records],
            column("importance"),
            [r.get("embedding") if same else None for r, same in zip(records, same_model)],
            [r.get("embedding_model") if same else None for r, same in zip(records, same_model)],
            column("observed_at"),
            column("created_at"),
            column("updated_at"),
            column("access_count"),
            column("expires_at"),
            column("version"),
            [lexical.document(r["content"], r.get("context") or "") for r in records],
            column("kind"),  # absent in archives written before episodes existed
            records[0]["user_id"],
            actor,
            request_id,
        ],
    )
    return [row[0] for row in rows]
