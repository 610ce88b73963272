"""Privacy: export everything about a user, erase everything about a user, deletion requests.

Which tables hold user data is read from the catalogue (every base table with a
``user_id`` column), so tables added by later migrations are exported and erased without
touching this module. ``deletion_requests`` is the one exception: it is the record that an
erasure happened, and once carried out it keeps only a hash of the user id, the times and
the row counts.

Erasure is durable: the request is committed in PostgreSQL before anything is erased, then
its steps run in order: archive objects (found by listing the user's prefix, so even
orphans go), PostgreSQL in one transaction (children before parents), the Redis hot copies
of threads. A step that fails (Redis or the archive unreachable) stays in the request's
``pending`` list, and the in-process retry loop (every few seconds, with backoff) and the
retention job repeat it until the list is empty; every step is idempotent.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.archive import Archive, subject_hash, user_prefix
from services.db import Pool, Tx, text_array
from services.errors import NotFound
from services.memories.validation import check_id, check_uuid
from services.threads import ThreadStore, retry_cache_purges

log = logging.getLogger(__name__)

RECORD_TABLE = "deletion_requests"
# Not erased: the record that an erasure happened, and the caller's credentials (so
# DELETE /v1/me stays idempotent; an admin revokes keys with services.admin).
KEPT_TABLES = (RECORD_TABLE, "api_keys")
# Columns never exported: derived search data and secrets' hashes.
_NOT_EXPORTED = ("embedding", "tsv")


@dataclass(frozen=True)
class DeletionRequest:
    """An erasure request and how far it got: ``pending`` lists the steps still to do
    (of STEPS); ``counts`` what was removed (rows per table, archive objects, Redis keys)."""

    id: str
    status: str
    requested_at: datetime
    completed_at: datetime | None
    attempts: int
    last_error: str | None
    counts: dict[str, int] = field(default_factory=dict)
    pending: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.status == "done"

    @property
    def done_steps(self) -> list[str]:
        return [step for step in STEPS if step not in self.pending]


# ---- discovery ------------------------------------------------------------------------------


def user_tables(tx: Tx) -> list[str]:
    """Base tables with a user_id column, ordered so referencing tables come first."""
    tables = [
        row[0]
        for row in tx.execute(
            """
            SELECT c.table_name FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema = current_schema() AND c.column_name = 'user_id'
              AND t.table_type = 'BASE TABLE' AND c.table_name <> ALL(%s::text[])
            ORDER BY c.table_name
            """,
            [list(KEPT_TABLES)],
        )
    ]
    edges = tx.execute(
        """
        SELECT child.relname, parent.relname FROM pg_constraint k
        JOIN pg_class child ON child.oid = k.conrelid
        JOIN pg_class parent ON parent.oid = k.confrelid
        WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace
        """
    )
    return _children_first(tables, [(c, p) for c, p in edges if c != p])


def _children_first(tables: list[str], edges: list[tuple[str, str]]) -> list[str]:
    ordered: list[str] = []
    remaining = list(tables)
    while remaining:
        ready = [
            t
            for t in remaining
            if not any(parent == t and child in remaining for child, parent in edges)
        ]
        if not ready:  # a cycle: fall back to name order for the rest
            ready = remaining[:1]
        for table in ready:
            ordered.append(table)
            remaining.remove(table)
    return ordered


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# ---- export ---------------------------------------------------------------------------------


def export_user(pool: Pool, archive: Archive, user_id: str) -> dict[str, Any]:
    """Everything stored about ``user_id`` as JSON-ready data: one list of rows per table,
    plus the archived memories' full records under ``archive``."""
    check_id(user_id, "user_id")
    out: dict[str, Any] = {"user_id": user_id, "tables": {}}
    with pool.transaction() as tx:
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # Scoped to the user after the SET TRANSACTION, which must come first (a user-scoped
        # transaction's BEGIN already runs a query): on the user-scoped pool row-level
        # security then confines every table's rows to this user.
        tx.execute("SELECT set_config('app.user_id', %s, true)", [user_id])
        for table in user_tables(tx):
            columns = [
                row[0]
                for row in tx.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s "
                    "ORDER BY ordinal_position",
                    [table],
                )
                if row[0] not in _NOT_EXPORTED and not row[0].endswith("_hash")
            ]
            select = ", ".join(_quote(c) for c in columns)
            rows = tx.execute(
                f"SELECT to_jsonb(x) FROM (SELECT {select} FROM {_quote(table)} "
                "WHERE user_id = %s) AS x",
                [user_id],
            )
            out["tables"][table] = [_json(row[0]) for row in rows]
    out["archive"] = [
        record for name in archive.list(user_prefix(user_id)) for record in archive.read(name)
    ]
    for record in out["archive"]:
        record.pop("embedding", None)
    return out


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# ---- erasure --------------------------------------------------------------------------------

STEPS = ("archive", "database", "redis")
LEASE_SECONDS = 60  # an attempt under way; if its process dies, another takes over after this
MAX_BACKOFF_SECONDS = 30  # between failed attempts; bounds the wait once a dependency is back


def erase_user(pool: Pool, redis: Any | None, archive: Archive, user_id: str) -> DeletionRequest:
    """Remove everything about ``user_id`` and record (only) that it happened.

    The request is committed first (or the user's pending one is taken over), then every
    step still to do is attempted. What fails (Redis or the archive unreachable) stays
    pending in the returned request and is retried by ``process_deletion_requests`` (the
    in-process retry loop and the retention job) until done.
    """
    request_id = _file_request(pool, user_id, lease=True)
    return _attempt(pool, redis, archive, request_id, user_id)


def _attempt(
    pool: Pool, redis: Any | None, archive: Archive, request_id: str, user_id: str
) -> DeletionRequest:
    with pool.transaction() as tx:
        row = tx.one(f"SELECT pending FROM {RECORD_TABLE} WHERE id = %s", [request_id])
    pending = [step for step in STEPS if step in (row[0] if row else STEPS)]
    counts: Counter[str] = Counter()
    left: list[str] = []
    errors: list[str] = []
    for step in pending:
        try:
            counts.update(_STEP_RUNNERS[step](pool, redis, archive, user_id))
        except Exception as error:  # recorded; the retry loop and the retention job repeat it
            left.append(step)
            errors.append(f"{step}: {type(error).__name__}: {_first_line(error)}")
            log.warning("erasure request %s: step %s failed: %s", request_id, step, errors[-1])
    return _record(pool, request_id, left, counts, "; ".join(errors) or None)


def _erase_archive(pool: Pool, redis: Any | None, archive: Archive, user_id: str) -> Counter:
    objects = archive.list(user_prefix(user_id))  # by prefix, so even orphans go
    for name in objects:
        archive.delete(name)
    return Counter({"archive_objects": len(objects)})


def _erase_database(pool: Pool, redis: Any | None, archive: Archive, user_id: str) -> Counter:
    counts: Counter[str] = Counter()
    with pool.transaction() as tx:
        for table in user_tables(tx):
            deleted = tx.execute(
                f"DELETE FROM {_quote(table)} WHERE user_id = %s RETURNING 1", [user_id]
            )
            counts[f"rows.{table}"] = len(deleted)
    return counts


def _erase_redis(pool: Pool, redis: Any | None, archive: Archive, user_id: str) -> Counter:
    if redis is None:
        return Counter({"redis_keys": 0})
    pattern = ThreadStore(pool=None, redis=redis)._key(user_id, "*")  # type: ignore[arg-type]
    keys = list(redis.scan_iter(match=pattern, count=500))
    if keys:
        redis.delete(*keys)
    return Counter({"redis_keys": len(keys)})


# Order matters: the database goes before Redis, so a read racing the erasure cannot
# refill a hot copy from rows that are about to go.
_STEP_RUNNERS = {"archive": _erase_archive, "database": _erase_database, "redis": _erase_redis}


def _record(
    pool: Pool, request_id: str, left: list[str], counts: Counter, error: str | None
) -> DeletionRequest:
    with pool.transaction() as tx:
        previous = tx.value(
            f"SELECT counts FROM {RECORD_TABLE} WHERE id = %s FOR UPDATE", [request_id]
        )
        total = Counter(_json(previous) or {})
        total.update(counts)
        for key in ("archive_objects", "redis_keys"):
            total.setdefault(key, 0)
        row = tx.one(
            f"""UPDATE {RECORD_TABLE} SET
                pending = %s::text[], attempts = attempts + 1, last_error = %s,
                counts = %s::jsonb,
                status = CASE WHEN %s THEN 'done' ELSE 'pending' END,
                user_id = CASE WHEN %s THEN NULL ELSE user_id END,
                completed_at = CASE WHEN %s THEN now() END,
                next_attempt_at = now() + make_interval(secs => least(%s, power(2, attempts + 1)))
            WHERE id = %s RETURNING {_REQUEST_COLUMNS}""",
            [
                text_array(left),
                error,
                json.dumps(dict(sorted(total.items()))),
                not left,
                not left,
                not left,
                MAX_BACKOFF_SECONDS,
                request_id,
            ],
        )
    return _request(row)


# ---- deletion requests ----------------------------------------------------------------------

_REQUEST_COLUMNS = (
    "id::text, status, requested_at, completed_at, attempts, last_error, counts, pending"
)


def request_deletion(pool: Pool, user_id: str) -> DeletionRequest:
    """File an erasure request, carried out by the next retry (the in-process loop or the
    retention job); idempotent: a pending request of the user is returned as it is."""
    return get_deletion_request(pool, _file_request(pool, user_id, lease=False))


def _file_request(pool: Pool, user_id: str, *, lease: bool) -> str:
    """The id of the user's pending request, filed (committed) if there is none. With
    ``lease`` the caller is about to carry it out, so the retry loop leaves it alone."""
    check_id(user_id, "user_id")
    with pool.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"erase:{user_id}"])
        request_id = tx.value(
            f"SELECT id::text FROM {RECORD_TABLE} WHERE user_id = %s AND status = 'pending'",
            [user_id],
        )
        if request_id is None:
            request_id = tx.value(
                f"INSERT INTO {RECORD_TABLE} (user_id, subject_hash) VALUES (%s, %s) "
                "RETURNING id::text",
                [user_id, subject_hash(user_id)],
            )
        if lease:
            tx.execute(
                f"UPDATE {RECORD_TABLE} SET next_attempt_at = now() + make_interval(secs => %s) "
                "WHERE id = %s",
                [LEASE_SECONDS, request_id],
            )
    return request_id


def get_deletion_request(
    pool: Pool, request_id: str, user_id: str | None = None
) -> DeletionRequest:
    """The request ``request_id``; with ``user_id``, only if it is that user's (a carried
    out request no longer names the user, only a hash of the id)."""
    request_id = check_uuid(request_id, "request_id")
    with pool.transaction(user_id) as tx:
        row = tx.one(
            f"SELECT {_REQUEST_COLUMNS} FROM {RECORD_TABLE} "
            "WHERE id = %s AND (%s::text IS NULL OR subject_hash = %s)",
            [request_id, user_id, None if user_id is None else subject_hash(user_id)],
        )
    if row is None:
        raise NotFound(f"erasure request {request_id} not found", "request_id")
    return _request(row)


def process_deletion_requests(
    pool: Pool,
    redis: Any | None,
    archive: Archive,
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    limit: int = 1000,
    due_only: bool = False,
) -> tuple[int, int]:
    """Carry out pending requests, oldest first, until none is left or ``deadline``.

    Each is claimed (SKIP LOCKED, then leased), so concurrent runs rarely attempt the same
    request at once, and if they do, every step is idempotent. ``due_only`` (the retry
    loop) skips requests in their backoff or leased by an attempt under way; the retention
    job takes every pending request. Returns (completed, attempts left pending).
    """
    done = failed = 0
    seen: list[str] = []
    while clock() < deadline and done + failed < limit:
        with pool.transaction() as tx:
            row = tx.one(
                f"""UPDATE {RECORD_TABLE} SET next_attempt_at = now() + make_interval(secs => %s)
                WHERE id = (
                    SELECT id FROM {RECORD_TABLE} WHERE status = 'pending'
                      AND NOT (id = ANY(%s::uuid[])) AND (NOT %s OR next_attempt_at <= now())
                    ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED
                ) RETURNING id::text, user_id""",
                [LEASE_SECONDS, text_array(seen), due_only],
            )
        if row is None:
            break
        request_id, user_id = row
        seen.append(request_id)
        if _attempt(pool, redis, archive, request_id, user_id).status == "done":
            done += 1
        else:
            failed += 1
    return done, failed


@dataclass(frozen=True)
class Erasure:
    """Erasure bound to the jobs pool: it files the erasure record (which the user-scoped
    role may only read) and carries requests out across users."""

    pool: Pool
    redis: Any | None
    archive: Archive

    def erase(self, user_id: str) -> DeletionRequest:
        return erase_user(self.pool, self.redis, self.archive, user_id)

    def retry_due(self, deadline: float, limit: int) -> None:
        """One pass of the retry loop: requests whose retry is due, then the Redis copies
        of deleted threads that Redis could not drop at the time."""
        process_deletion_requests(
            self.pool, self.redis, self.archive, deadline=deadline, limit=limit, due_only=True
        )
        retry_cache_purges(self.pool, self.redis)


def _request(row: tuple) -> DeletionRequest:
    values = list(row)
    values[6] = _json(values[6]) or {}
    values[7] = tuple(values[7] or ())
    return DeletionRequest(*values)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0][:200] if str(error) else ""
