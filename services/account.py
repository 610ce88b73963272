"""A caller's own data as a whole: spend, export, retention settings, the status of an
erasure, restoring archived memories.

Bound to the user-scoped pool (memory_agent_app): each transaction names the caller, so
row-level security confines it to the caller's rows whatever its query says. Work across
users (filing and carrying out erasures, reports over every user) runs elsewhere, on the
jobs pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.archive import Archive
from services.db import Pool
from services.privacy import DeletionRequest, export_user, get_deletion_request
from services.retention import (
    Restored,
    RetentionPolicy,
    get_policy,
    restore_archived,
    set_policy,
)
from services.usage import CostReport, build_report


@dataclass(frozen=True)
class Account:
    pool: Pool  # user-scoped
    archive: Archive
    defaults: RetentionPolicy
    embedding_model: str

    def usage(self, user_id: str, since: datetime, until: datetime) -> CostReport:
        return build_report(self.pool, since=since, until=until, user_id=user_id)

    def export(self, user_id: str) -> dict[str, Any]:
        return export_user(self.pool, self.archive, user_id)

    def erasure(self, user_id: str, request_id: str) -> DeletionRequest:
        return get_deletion_request(self.pool, request_id, user_id)

    def retention(self, user_id: str) -> RetentionPolicy:
        return get_policy(self.pool, self.defaults, user_id)

    def set_retention(self, user_id: str, changes: Mapping[str, Any]) -> RetentionPolicy:
        return set_policy(self.pool, self.defaults, user_id, changes)

    def restore(
        self, user_id: str, memory_ids: Sequence[str] | None, request_id: str | None
    ) -> Restored:
        return restore_archived(
            self.pool,
            self.archive,
            user_id,
            self.embedding_model,
            memory_ids,
            request_id=request_id,
        )
