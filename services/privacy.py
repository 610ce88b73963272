"""Privacy: export everything about a user, erase everything about a user, deletion requests.

Which tables hold user data is read from the catalogue (every base table with a
``user_id`` column), so tables added by later migrations are exported and erased without
touching this module. ``deletion_requests`` is the one exception: it is the record that an
erasure happened, and once carried out it keeps only a hash of the user id, the times and
the row counts.

Erasure order: archive objects (found by listing the user's prefix, so even orphans go),
then PostgreSQL in one transaction (children before parents), then the Redis hot copies of
threads. If a step fails the request stays pending and the retention job repeats it; every
step is idempotent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.archive import Archive, subject_hash, user_prefix
from services.db import Pool, Tx
from services.errors import NotFound
from services.memories import check_id, check_uuid
from services.threads import ThreadStore

log = logging.getLogger(__name__)

RECORD_TABLE = "deletion_requests"
# Not erased: the record that an erasure happened, and the caller's credentials (so
# DELETE /v1/me stays idempotent; an admin revokes keys with services.admin).
KEPT_TABLES = (RECORD_TABLE, "api_keys")
# Columns never exported: derived search data and secrets' hashes.
_NOT_EXPORTED = ("embedding", "tsv")


@dataclass(frozen=True)
class DeletionRequest:
    id: str
    status: str
    requested_at: datetime
    completed_at: datetime | None
    attempts: int
    last_error: str | None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed: rows per table, archive objects, Redis keys."""

    rows: dict[str, int]
    archive_objects: int
    redis_keys: int
    complete: bool
    error: str | None = None

    def counts(self) -> dict[str, int]:
        return {
            **{f"rows.{table}": count for table, count in self.rows.items()},
            "archive_objects": self.archive_objects,
            "redis_keys": self.redis_keys,
        }


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


def erase_user(pool: Pool, redis: Any | None, archive: Archive, user_id: str) -> Erasure:
    """Remove everything about ``user_id`` and record (only) that it happened.

    Completes any pending deletion request of the user, or records a completed one. If a
    step fails (Redis down, say) the record stays pending, so the retention job retries.
    """
    check_id(user_id, "user_id")
    erasure = _erase(pool, redis, archive, user_id)
    with pool.transaction() as tx:
        pending = tx.execute(
            f"SELECT id::text FROM {RECORD_TABLE} WHERE user_id = %s AND status = 'pending' "
            "FOR UPDATE",
            [user_id],
        )
        if not pending:
            pending = tx.execute(
                f"INSERT INTO {RECORD_TABLE} (user_id, subject_hash) VALUES (%s, %s) "
                "RETURNING id::text",
                [user_id, subject_hash(user_id)],
            )
        for (request_id,) in pending:
            _finish(tx, request_id, erasure)
    return erasure


def _erase(pool: Pool, redis: Any | None, archive: Archive, user_id: str) -> Erasure:
    objects = archive.list(user_prefix(user_id))
    for name in objects:
        archive.delete(name)
    rows: dict[str, int] = {}
    with pool.transaction() as tx:
        for table in user_tables(tx):
            deleted = tx.execute(
                f"DELETE FROM {_quote(table)} WHERE user_id = %s RETURNING 1", [user_id]
            )
            rows[table] = len(deleted)
    keys, error = 0, None
    if redis is not None:
        try:
            keys = _erase_redis(redis, user_id)
        except Exception as caught:  # retried by the retention job
            error = f"redis: {type(caught).__name__}: {caught}"
            log.warning("erasing the Redis copies of a user failed: %s", error)
    return Erasure(rows, len(objects), keys, complete=error is None, error=error)


def _erase_redis(redis: Any, user_id: str) -> int:
    pattern = ThreadStore(pool=None, redis=redis)._key(user_id, "*")  # type: ignore[arg-type]
    keys = list(redis.scan_iter(match=pattern, count=500))
    if keys:
        redis.delete(*keys)
    return len(keys)


def _finish(tx: Tx, request_id: str, erasure: Erasure) -> None:
    if erasure.complete:
        tx.execute(
            f"""UPDATE {RECORD_TABLE} SET status = 'done', user_id = NULL, completed_at = now(),
                attempts = attempts + 1, last_error = NULL, counts = %s::jsonb WHERE id = %s""",
            [json.dumps(erasure.counts()), request_id],
        )
    else:
        tx.execute(
            f"UPDATE {RECORD_TABLE} SET attempts = attempts + 1, last_error = %s, "
            "counts = %s::jsonb WHERE id = %s",
            [erasure.error, json.dumps(erasure.counts()), request_id],
        )


# ---- deletion requests ----------------------------------------------------------------------

_REQUEST_COLUMNS = "id::text, status, requested_at, completed_at, attempts, last_error, counts"


def request_deletion(pool: Pool, user_id: str) -> DeletionRequest:
    """File an erasure request (carried out by the next retention run); idempotent."""
    check_id(user_id, "user_id")
    with pool.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"erase:{user_id}"])
        row = tx.one(
            f"SELECT {_REQUEST_COLUMNS} FROM {RECORD_TABLE} "
            "WHERE user_id = %s AND status = 'pending'",
            [user_id],
        )
        if row is None:
            row = tx.one(
                f"INSERT INTO {RECORD_TABLE} (user_id, subject_hash) VALUES (%s, %s) "
                f"RETURNING {_REQUEST_COLUMNS}",
                [user_id, subject_hash(user_id)],
            )
    return _request(row)


def get_deletion_request(pool: Pool, request_id: str) -> DeletionRequest:
    request_id = check_uuid(request_id, "request_id")
    with pool.transaction() as tx:
        row = tx.one(f"SELECT {_REQUEST_COLUMNS} FROM {RECORD_TABLE} WHERE id = %s", [request_id])
    if row is None:
        raise NotFound(f"deletion request {request_id} not found", "request_id")
    return _request(row)


def process_deletion_requests(
    pool: Pool,
    redis: Any | None,
    archive: Archive,
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    limit: int = 1000,
) -> tuple[int, int]:
    """Carry out pending requests, oldest first, until none is left or ``deadline``.

    Each request is claimed with SKIP LOCKED, so concurrent runs never erase the same user
    twice at once. Returns (completed, failed attempts).
    """
    done = failed = 0
    seen: set[str] = set()
    while clock() < deadline and done + failed < limit:
        with pool.transaction() as tx:
            row = tx.one(
                f"SELECT id::text, user_id FROM {RECORD_TABLE} WHERE status = 'pending' "
                "AND NOT (id = ANY(%s::uuid[])) ORDER BY requested_at "
                "LIMIT 1 FOR UPDATE SKIP LOCKED",
                [list(seen)],
            )
            if row is None:
                break
            request_id, user_id = row
            seen.add(request_id)
            try:
                erasure = _erase(pool, redis, archive, user_id)
            except Exception as error:  # recorded; the next run retries
                log.exception("erasure request %s failed", request_id)
                erasure = Erasure({}, 0, 0, complete=False, error=f"{type(error).__name__}")
            _finish(tx, request_id, erasure)
            if erasure.complete:
                done += 1
            else:
                failed += 1
    return done, failed


def _request(row: tuple) -> DeletionRequest:
    values = list(row)
    values[6] = _json(values[6]) or {}
    return DeletionRequest(*values)
