"""Idempotent chat requests: the ``idempotent_requests`` table behind ``Idempotency-Key``.

A request claims its key before its turn runs; a retry with the same key and the same
request gets the first result's events back instead of running the turn again, and a
retry with a different request (or while the first still runs) is a 409. Runs on the
user-scoped pool: every transaction names the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.db import Pool
from services.errors import AppError

HEADER = "Idempotency-Key"


class IdempotencyConflict(AppError):
    status = 409
    code = "idempotency_conflict"


@dataclass(frozen=True)
class Idempotency:
    pool: Pool  # user-scoped

    def claim(self, user_id: str, key: str, fingerprint: str) -> list[dict[str, Any]] | None:
        """None: this request owns the key and runs. Otherwise the stored events to replay."""
        with self.pool.transaction(user_id) as tx:
            claimed = tx.one(
                "INSERT INTO idempotent_requests (user_id, key, request_hash) "
                "VALUES (%s, %s, %s) ON CONFLICT (user_id, key) DO NOTHING RETURNING 1",
                [user_id, key, fingerprint],
            )
            if claimed:
                return None
            row = tx.one(
                "SELECT request_hash, response FROM idempotent_requests "
                "WHERE user_id = %s AND key = %s",
                [user_id, key],
            )
        if row is None:  # released between the two statements: let the client retry
            raise IdempotencyConflict("request with this Idempotency-Key is being retried", "key")
        stored_hash, response = row
        if stored_hash != fingerprint:
            raise IdempotencyConflict(f"{HEADER} was used for a different request", HEADER)
        if response is None:
            raise IdempotencyConflict(f"a request with this {HEADER} is still running", HEADER)
        return json.loads(response) if isinstance(response, str) else response

    def release(self, user_id: str, key: str) -> None:
        """Give the key up (the turn never started): a retry may run it."""
        with self.pool.transaction(user_id) as tx:
            tx.execute(
                "DELETE FROM idempotent_requests "
                "WHERE user_id = %s AND key = %s AND response IS NULL",
                [user_id, key],
            )

    def store(self, user_id: str, key: str, events: list[dict[str, Any]]) -> None:
        with self.pool.transaction(user_id) as tx:
            tx.execute(
                "UPDATE idempotent_requests SET response = %s::jsonb "
                "WHERE user_id = %s AND key = %s",
                [json.dumps(events, default=str), user_id, key],
            )
