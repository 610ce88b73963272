"""The steps of the store's writes, each inside the caller's transaction: insert, lock,
update, retire an expired memory, append a history event, check a bulk item; and
``announces``, which tells the store's listener what a committed write changed."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services import lexical
from services.db import Tx
from services.embeddings import to_pgvector
from services.errors import Conflict
from services.memories import sql
from services.memories.records import Memory, NewMemory, Written, read_memory
from services.memories.validation import (
    check_content,
    check_id,
    check_importance,
    check_kind,
    check_metadata,
    check_text,
    check_time,
    check_vector,
)

ChangeListener = Callable[[list[str]], None]
_log = logging.getLogger(__name__)


def announces(method: Callable[..., Any]) -> Callable[..., Any]:
    """Tell the store's ``on_change`` which memories a write added or changed, after commit."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
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


def insert(tx: Tx, user_id: str, namespace: str, item: NewMemory) -> Memory | None:
    """Insert a new memory (``item`` already checked, no embedding); None when the key is
    taken. Keyless facts await dedup."""
    new_id = str(uuid.uuid4())
    row = tx.one(
        sql.INSERT,
        [
            new_id,
            user_id,
            namespace,
            item.key or new_id,
            item.content,
            item.context,
            json.dumps(item.metadata),
            float(item.importance),
            lexical.document(item.content, item.context),
            item.key is None and item.kind == "fact",
            item.observed_at,
            item.expires_at,
            item.kind,
        ],
    )
    return read_memory(row) if row else None


def retire_expired(tx: Tx, user_id: str, namespace: str, key: str, request_id: str | None) -> None:
    """Delete the expired memory still holding ``key``, with its DELETE event."""
    row = tx.one(sql.RETIRE_EXPIRED, [user_id, namespace, key])
    if row:
        expired = read_memory(row)
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
        sql.RECORD_EVENT,
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


def lock_by_id(tx: Tx, user_id: str, memory_id: str) -> Memory | None:
    row = tx.one(sql.LOCK_BY_ID, [memory_id, user_id])
    return read_memory(row) if row else None


def lock_by_key(tx: Tx, user_id: str, namespace: str, key: str) -> Memory | None:
    row = tx.one(sql.LOCK_BY_KEY, [user_id, namespace, key])
    return read_memory(row) if row else None


def insert_or_lock(
    tx: Tx, user_id: str, namespace: str, item: NewMemory, actor: str, request_id: str | None
) -> Written | Memory:
    """The new memory as written, or the live one that already holds its key, locked."""
    inserted = insert(tx, user_id, namespace, item)
    if inserted is None:
        current = lock_by_key(tx, user_id, namespace, item.key or "")
        if current is not None:
            return current
        retire_expired(tx, user_id, namespace, item.key or "", request_id)  # it held the key
        inserted = insert(tx, user_id, namespace, item)
        assert inserted is not None
    record_event(tx, inserted, "ADD", None, inserted, actor, request_id)
    return Written(inserted, "ADD")


def check_expected_version(current: Memory, expected: int | None) -> None:
    """A conditional write goes ahead only on the version the caller read."""
    if expected is not None and expected != current.version:
        raise Conflict(
            f"memory {current.id} is at version {current.version}, not {expected}", "version"
        )


def update(
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
    """Rewrite ``current`` (locked); new text drops its vector so it is embedded again."""
    text_changed = content != current.content or context != current.context
    if not text_changed and (metadata, importance, expires_at) == (
        current.metadata,
        current.importance,
        current.expires_at,
    ):
        return Written(current, "UNCHANGED")
    row = tx.one(
        sql.UPDATE,
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
    updated = read_memory(row)
    record_event(tx, updated, "UPDATE", current, updated, actor, request_id)
    return Written(updated, "UPDATE")


def bulk_row(item: NewMemory, where: str, max_chars: int, dim: int) -> tuple[Any, ...]:
    """One ``add_many`` item, checked, as the values of ``sql.BULK_ARRAYS`` in order."""
    content = check_content(item.content, f"{where}.content", max_chars)
    context = check_text(item.context, f"{where}.context", max_chars)
    check_metadata(item.metadata)
    if item.key is not None:
        check_id(item.key, f"{where}.key")
    vector = None
    if item.embedding is not None:
        vector = to_pgvector(check_vector(item.embedding, dim, where))
    new_id = str(uuid.uuid4())
    values = dict(
        id=new_id,
        key=item.key or new_id,
        content=content,
        context=context,
        metadata=json.dumps(item.metadata),
        importance=check_importance(item.importance),
        doc=lexical.document(content, context),
        vec=vector,
        observed_at=check_time(item.observed_at, f"{where}.observed_at"),
        expires_at=check_time(item.expires_at, f"{where}.expires_at"),
        kind=check_kind(item.kind, f"{where}.kind"),
    )
    return tuple(values[name] for name in sql.BULK_ARRAYS)
