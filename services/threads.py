"""Conversation threads: ordered messages per thread, owned by one user.

PostgreSQL (``threads``, ``messages``) is the durable copy and is written first. When
Redis is configured it holds a hot copy of each thread's recent messages, written through
after the commit, with a TTL. Redis being flushed, slow or down never loses a message or
fails a request: reads fall back to PostgreSQL and refill the cache. Only core Redis
commands are used (lists, strings, MULTI), so Memorystore serves it as is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.db import Pool, Tx, text_array
from services.errors import InvalidInput, NotFound
from services.limits import MAX_THREAD_ID_CHARS, MAX_THREAD_MESSAGE_CHARS, THREAD_ID_PATTERN
from services.memories.validation import check_id, check_limit

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")
THREAD_ID = re.compile(THREAD_ID_PATTERN)


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    seq: int = 0
    created_at: str = ""

    def to_json(self) -> str:
        return json.dumps(vars(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ChatMessage:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Thread:
    thread_id: str
    user_id: str
    title: str
    message_count: int
    created_at: datetime
    updated_at: datetime


@dataclass
class RedisGuard:
    """Skips Redis for ``cooldown`` seconds after an error, so an outage costs one timeout."""

    cooldown: float = 5.0
    clock: Any = time.monotonic
    _until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def available(self) -> bool:
        return self.clock() >= self._until

    def failed(self, error: Exception) -> None:
        with self._lock:
            self._until = self.clock() + self.cooldown
        log.warning("redis unavailable (%s); using PostgreSQL only for %.0fs", error, self.cooldown)


class ThreadStore:
    def __init__(
        self,
        pool: Pool,
        redis: Any | None = None,
        *,
        ttl_seconds: int = 86400,
        hot_messages: int = 100,
        guard: RedisGuard | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.hot_messages = hot_messages
        self.guard = guard or RedisGuard()

    def append(
        self, user_id: str, thread_id: str | None, messages: list[ChatMessage], title: str = ""
    ) -> tuple[str, list[ChatMessage]]:
        """Append messages (creating the thread if new); returns the id and stored messages."""
        check_id(user_id, "user_id")
        thread_id = check_thread_id(thread_id) if thread_id else new_thread_id()
        for index, message in enumerate(messages):
            check_message(message, f"messages[{index}]")
        with self.pool.transaction(user_id) as tx:
            start = self._claim(tx, user_id, thread_id, len(messages), title)
            stored = [replace(m, seq=start + i) for i, m in enumerate(messages)]
            created = tx.execute(
                """
                INSERT INTO messages (thread_id, seq, user_id, role, content, tool_calls,
                    tool_call_id, input_tokens, output_tokens)
                SELECT %s, r.seq, %s, r.role, r.content, r.tool_calls::jsonb, r.tool_call_id,
                    r.input_tokens, r.output_tokens
                FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::int[], %s::int[])
                    AS r(seq, role, content, tool_calls, tool_call_id, input_tokens,
                         output_tokens)
                RETURNING seq, created_at
                """,
                [
                    thread_id,
                    user_id,
                    [m.seq for m in stored],
                    [m.role for m in stored],
                    [m.content for m in stored],
                    [None if m.tool_calls is None else json.dumps(m.tool_calls) for m in stored],
                    [m.tool_call_id for m in stored],
                    [m.input_tokens for m in stored],
                    [m.output_tokens for m in stored],
                ],
            )
        times = {seq: created_at.isoformat() for seq, created_at in created}
        stored = [replace(m, created_at=times[m.seq]) for m in stored]
        self._cache_append(user_id, thread_id, stored)
        return thread_id, stored

    def load(self, user_id: str, thread_id: str, last_n: int = 50) -> list[ChatMessage]:
        """The last ``last_n`` messages, oldest first; NotFound unless the user owns it."""
        check_id(user_id, "user_id")
        check_thread_id(thread_id)
        last_n = check_limit(last_n)
        with self.pool.transaction(user_id) as tx:
            count = tx.value(
                "SELECT message_count FROM threads WHERE thread_id = %s AND user_id = %s",
                [thread_id, user_id],
            )
            if count is None:
                raise NotFound(f"thread {thread_id} not found", "thread_id")
            cached = self._cache_read(user_id, thread_id, last_n, count)
            if cached is not None:
                return cached
            rows = tx.execute(
                f"""
                SELECT {_MESSAGE_COLUMNS} FROM messages
                WHERE thread_id = %s AND user_id = %s AND seq >= %s
                ORDER BY seq
                """,
                [thread_id, user_id, max(count - max(self.hot_messages, last_n), 0)],
            )
        messages = [_message(row) for row in rows]
        self._cache_fill(user_id, thread_id, messages)
        return messages[-last_n:]

    def get(self, user_id: str, thread_id: str) -> Thread:
        check_id(user_id, "user_id")
        check_thread_id(thread_id)
        with self.pool.transaction(user_id) as tx:
            row = tx.one(
                f"SELECT {_THREAD_COLUMNS} FROM threads WHERE thread_id = %s AND user_id = %s",
                [thread_id, user_id],
            )
        if row is None:
            raise NotFound(f"thread {thread_id} not found", "thread_id")
        return Thread(*row)

    def list(self, user_id: str, limit: int = 50, before: str | None = None) -> list[Thread]:
        """Most recently active first; ``before`` is the last thread id of the previous page."""
        check_id(user_id, "user_id")
        limit = check_limit(limit)
        with self.pool.transaction(user_id) as tx:
            anchor = None
            if before is not None:
                anchor = tx.one(
                    "SELECT updated_at, thread_id FROM threads "
                    "WHERE thread_id = %s AND user_id = %s",
                    [check_thread_id(before), user_id],
                )
                if anchor is None:
                    raise NotFound(f"thread {before} not found", "before")
            rows = tx.execute(
                f"""
                SELECT {_THREAD_COLUMNS} FROM threads
                WHERE user_id = %s
                  AND (%s::timestamptz IS NULL OR (updated_at, thread_id) < (%s, %s))
                ORDER BY updated_at DESC, thread_id DESC LIMIT %s
                """,
                [
                    user_id,
                    anchor[0] if anchor else None,
                    anchor[0] if anchor else None,
                    anchor[1] if anchor else None,
                    limit,
                ],
            )
        return [Thread(*row) for row in rows]

    def delete(self, user_id: str, thread_id: str) -> bool:
        """Delete a thread and its messages. True when its Redis copy is gone too; False
        when Redis could not drop it now: the key is remembered (``cache_purges``, in the
        deletion's own transaction) and ``retry_cache_purges`` deletes it once Redis is
        back, so the copy never outlives the thread by more than the retry interval."""
        check_id(user_id, "user_id")
        check_thread_id(thread_id)
        key = self._key(user_id, thread_id)
        with self.pool.transaction(user_id) as tx:
            deleted = tx.one(
                "DELETE FROM threads WHERE thread_id = %s AND user_id = %s RETURNING 1",
                [thread_id, user_id],
            )
            if deleted is None:
                raise NotFound(f"thread {thread_id} not found", "thread_id")
            if self.redis is None:
                return True
            purge_id = tx.value(
                "INSERT INTO cache_purges (user_id, redis_key) VALUES (%s, %s) RETURNING id",
                [user_id, key],
            )
        if not self.guard.available():
            return False
        try:
            self.redis.delete(key)
        except Exception as error:
            self.guard.failed(error)
            return False
        try:
            with self.pool.transaction(user_id) as tx:
                tx.execute("DELETE FROM cache_purges WHERE id = %s", [purge_id])
        except Exception as error:  # the key is gone; the retry loop forgets the row later
            log.warning("could not forget a done Redis purge: %s", error)
        return True

    # ---- internals ----------------------------------------------------------------------

    def _claim(self, tx: Tx, user_id: str, thread_id: str, count: int, title: str) -> int:
        """Create or lock the thread and reserve ``count`` sequence numbers; returns the first."""
        row = tx.one(
            """
            INSERT INTO threads AS t (thread_id, user_id, title, message_count)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (thread_id) DO UPDATE
                SET message_count = t.message_count + EXCLUDED.message_count, updated_at = now()
                WHERE t.user_id = EXCLUDED.user_id
            RETURNING message_count
            """,
            [thread_id, user_id, title[:200], count],
        )
        if row is None:  # the id exists but belongs to someone else
            raise NotFound(f"thread {thread_id} not found", "thread_id")
        return int(row[0]) - count

    def _key(self, user_id: str, thread_id: str) -> str:
        # The owner is part of the key, so a thread id alone never reaches another
        # user's cached messages.
        owner = hashlib.sha256(user_id.encode()).hexdigest()[:24]
        return f"ma:thread:{owner}:{thread_id}"

    def _cache_read(
        self, user_id: str, thread_id: str, last_n: int, count: int
    ) -> list[ChatMessage] | None:
        """The cached tail, only if it provably ends at the durable message count.

        The count comes from PostgreSQL (the ownership check reads it anyway), so a copy
        left stale by an outage, a failed write or a flush is detected and refilled.
        """
        if self.redis is None or not self.guard.available() or last_n > self.hot_messages:
            return None
        try:
            raw = self.redis.lrange(self._key(user_id, thread_id), -last_n, -1)
        except Exception as error:
            self.guard.failed(error)
            return None
        messages = [ChatMessage.from_json(item) for item in raw]
        expected_first = max(count - last_n, 0)
        if [m.seq for m in messages] != list(range(expected_first, count)):
            return None
        return messages

    def _cache_append(self, user_id: str, thread_id: str, messages: list[ChatMessage]) -> None:
        # Only extend a list that is already complete; a missing key is filled from
        # PostgreSQL on the next read, so a partial list is never created.
        if self.redis is None or not self.guard.available() or not messages:
            return
        key = self._key(user_id, thread_id)
        try:
            pipe = self.redis.pipeline(transaction=True)
            if messages[0].seq == 0:
                pipe.delete(key)
                pipe.rpush(key, *[m.to_json() for m in messages])
            else:
                pipe.rpushx(key, *[m.to_json() for m in messages])
            pipe.ltrim(key, -self.hot_messages, -1)
            pipe.expire(key, self.ttl_seconds)
            pipe.execute()
        except Exception as error:
            self.guard.failed(error)
            self._cache_drop(user_id, thread_id)

    def _cache_fill(self, user_id: str, thread_id: str, messages: list[ChatMessage]) -> None:
        if self.redis is None or not self.guard.available() or not messages:
            return
        key = self._key(user_id, thread_id)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(key)
            pipe.rpush(key, *[m.to_json() for m in messages[-self.hot_messages :]])
            pipe.expire(key, self.ttl_seconds)
            pipe.execute()
        except Exception as error:
            self.guard.failed(error)

    def _cache_drop(self, user_id: str, thread_id: str) -> None:
        if self.redis is None:
            return
        try:
            self.redis.delete(self._key(user_id, thread_id))
        except Exception as error:
            self.guard.failed(error)


PURGE_MAX_BACKOFF_SECONDS = 30


def remember_purges(tx: Tx, keys: list[tuple[str, str]]) -> None:
    """Record Redis keys ((user id, key) pairs) to delete once Redis can be reached."""
    if keys:
        tx.execute(
            "INSERT INTO cache_purges (user_id, redis_key) "
            "SELECT * FROM unnest(%s::text[], %s::text[])",
            [text_array([u for u, _ in keys]), text_array([k for _, k in keys])],
        )


def retry_cache_purges(pool: Pool, redis: Any | None, limit: int = 500) -> tuple[int, int]:
    """Delete remembered Redis keys whose retry is due; returns (deleted, still pending).

    Runs on the jobs pool (across users). A Redis failure backs the batch off
    exponentially (capped), so an outage costs one timeout per pass.
    """
    if redis is None:
        return 0, 0
    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT id, redis_key FROM cache_purges WHERE next_attempt_at <= now() "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [limit],
        )
        if not rows:
            return 0, 0
        ids = [row[0] for row in rows]
        try:
            redis.delete(*sorted({row[1] for row in rows}))
        except Exception as error:
            log.warning("redis still unavailable for %d pending purges: %s", len(ids), error)
            tx.execute(
                "UPDATE cache_purges SET attempts = attempts + 1, next_attempt_at = now() + "
                "make_interval(secs => least(%s, power(2, attempts + 1))) "
                "WHERE id = ANY(%s::bigint[])",
                [PURGE_MAX_BACKOFF_SECONDS, ids],
            )
            return 0, len(ids)
        tx.execute("DELETE FROM cache_purges WHERE id = ANY(%s::bigint[])", [ids])
    return len(ids), 0


_MESSAGE_COLUMNS = (
    "role, content, tool_calls, tool_call_id, input_tokens, output_tokens, seq, created_at"
)
_THREAD_COLUMNS = "thread_id, user_id, title, message_count, created_at, updated_at"


def _message(row: tuple) -> ChatMessage:
    role, content, tool_calls, tool_call_id, tokens_in, tokens_out, seq, created_at = row
    if isinstance(tool_calls, str):
        tool_calls = json.loads(tool_calls)
    return ChatMessage(
        role, content, tool_calls, tool_call_id, tokens_in, tokens_out, seq, created_at.isoformat()
    )


def new_thread_id() -> str:
    return uuid.uuid4().hex


def check_thread_id(value: Any) -> str:
    if not isinstance(value, str) or not THREAD_ID.match(value):
        raise InvalidInput(
            f"thread_id must be 1-{MAX_THREAD_ID_CHARS} letters, digits, '-' or '_'", "thread_id"
        )
    return value


def check_message(message: ChatMessage, where: str) -> None:
    if message.role not in ROLES:
        raise InvalidInput(f"{where}.role must be one of {', '.join(ROLES)}", "role")
    if not isinstance(message.content, str) or len(message.content) > MAX_THREAD_MESSAGE_CHARS:
        raise InvalidInput(
            f"{where}.content must be a string of at most {MAX_THREAD_MESSAGE_CHARS} characters",
            "content",
        )
    if "\x00" in message.content:
        raise InvalidInput(f"{where}.content contains a NUL character", "content")
    for name in ("input_tokens", "output_tokens"):
        value = getattr(message, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{where}.{name} must be a non-negative integer", name)
