"""Search hits counted in memory, written as access statistics in one batched statement."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from services.db import Pool
from services.memories import sql


class AccessRecorder:
    """Counts search hits in memory; the background loop writes them in one statement."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._counts.update(ids)

    def take(self) -> dict[str, int]:
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts

    def flush(self, pool: Pool) -> int:
        """Write the counts taken so far in one statement (they span users); how many
        memories were counted."""
        counts = self.take()
        if counts:
            ids, hits = zip(*counts.items())
            with pool.transaction() as tx:
                tx.execute(sql.FLUSH_ACCESS, [list(ids), list(hits)])
        return len(counts)
