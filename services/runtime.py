"""Wiring: builds the long-lived objects of one process from Settings, and tears them down.

Everything here is constructed once per process and handed to the app factory and the
function handlers; nothing else in services/ reaches for globals.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from services.agent import Agent, AgentConfig
from services.archive import Archive, make_archive
from services.config import Settings
from services.db import APP_ROLE, JOBS_ROLE, Pool, Source, connection_source, open_pool
from services.embeddings import (
    CachedQueryEmbedder,
    Embedder,
    duplicate_threshold,
    embedding_spec,
    make_embedder,
)
from services.errors import DatabaseUnavailable
from services.llm.factory import WarmingRouter, build_router
from services.memories.records import StoreLimits
from services.memories.store import MemoryStore
from services.migrate import migrate
from services.outbox import BackgroundWorker, drain
from services.privacy import process_deletion_requests
from services.publisher import Publisher, make_publisher
from services.threads import ThreadStore, retry_cache_purges
from services.usage import UsageRecorder

log = logging.getLogger(__name__)

# The erasure retry loop: how often it looks for due work, and how much one pass may take.
ERASURE_RETRY_SECONDS = 5.0
ERASURE_PASS_SECONDS = 10.0
ERASURE_PASS_LIMIT = 50


@dataclass
class Runtime:
    """What the service and the functions run on.

    Two pools on one database: ``user_pool`` connects as memory_agent_app, which row-level
    security confines to the user each transaction names (everything done for a caller);
    ``pool`` connects as memory_agent_jobs, for work that spans users (embedding,
    retention, reflection's bookkeeping, erasure, API keys).
    """

    settings: Settings
    pool: Pool
    embedder: Embedder
    memories: MemoryStore
    threads: ThreadStore
    redis: Any | None
    worker: BackgroundWorker | None = None
    erasure_worker: BackgroundWorker | None = None
    agent: Agent | None = None
    usage: UsageRecorder | None = None
    archive: Archive | None = None
    publisher: Publisher | None = None
    user_pool: Pool = None  # type: ignore[assignment]  # defaults to ``pool``
    source: Source | None = None  # where both pools connect; closed after them

    def __post_init__(self) -> None:
        if self.user_pool is None:
            self.user_pool = self.pool

    def announce(self, memory_ids: list[str]) -> None:
        """After a committed write: publish the ids for embed_memories, wake the local worker."""
        if self.publisher is not None:
            self.publisher.publish(memory_ids)
        if self.worker is not None:
            self.worker.wake()

    def embed_outbox(self) -> int:
        """One pass of the outbox (and the batched access stats); returns rows embedded."""
        run = drain(
            self.pool,
            self.embedder,
            batch_size=self.settings.embed_batch_size,
            duplicate_threshold=duplicate_threshold(self.settings, self.embedder.model),
        )
        self.memories.flush_access_stats()
        return run.embedded

    def retry_erasures(self) -> None:
        """One pass of the erasure retry loop: deletion requests whose retry is due, then
        the Redis copies of deleted threads that Redis could not drop at the time."""
        if self.archive is None:
            return
        try:
            process_deletion_requests(
                self.pool,
                self.redis,
                self.archive,
                deadline=time.monotonic() + ERASURE_PASS_SECONDS,
                limit=ERASURE_PASS_LIMIT,
                due_only=True,
            )
            retry_cache_purges(self.pool, self.redis)
        except DatabaseUnavailable:  # the pool has said so; the next pass tries again
            return

    def pool_ping(self) -> None:
        with self.pool.transaction() as tx:
            tx.execute("SELECT 1")

    def close(self) -> None:
        if self.worker:
            self.worker.stop()
        if self.erasure_worker:
            self.erasure_worker.stop()
        self.pool.close()
        if self.user_pool is not self.pool:
            self.user_pool.close()
        if self.source is not None:
            self.source.close()
        if self.redis is not None:
            self.redis.close()


def build_runtime(settings: Settings, *, start_worker: bool | None = None) -> Runtime:
    source = connection_source(settings)  # one server (and one supervisor) for both pools
    pool = open_pool(
        settings, role=JOBS_ROLE, size=max(2, settings.db_pool_size // 4), source=source
    )
    user_pool = open_pool(settings, role=APP_ROLE, source=source)
    model, dim = embedding_spec(settings)
    migrate(pool, model, dim, settings.hnsw_index)  # as the login user, before the roles
    embedder = CachedQueryEmbedder(make_embedder(settings))
    redis_client = connect_redis(settings.redis_url) if settings.redis_url else None
    runtime = Runtime(
        settings=settings,
        pool=pool,
        user_pool=user_pool,
        source=source,
        embedder=embedder,
        memories=MemoryStore(
            user_pool,
            embedder,
            StoreLimits(
                max_content_chars=settings.max_content_chars,
                hnsw_index=settings.hnsw_index,
                hnsw_min_rows=settings.hnsw_min_rows,
            ),
            jobs_pool=pool,
        ),
        threads=ThreadStore(user_pool, redis_client, ttl_seconds=settings.thread_cache_ttl_seconds),
        redis=redis_client,
    )
    runtime.archive = make_archive(settings)
    runtime.publisher = make_publisher(settings)
    runtime.memories.on_change = runtime.announce
    runtime.usage = UsageRecorder(user_pool)
    runtime.agent = Agent(
        runtime.memories,
        runtime.threads,
        WarmingRouter(lambda: build_router(settings)),
        runtime.usage,
        config=AgentConfig.from_settings(settings),
    )
    if settings.embed_in_process if start_worker is None else start_worker:
        runtime.worker = BackgroundWorker(
            runtime.embed_outbox, settings.embed_poll_seconds, "embedding-outbox"
        )
        runtime.worker.start()
    if start_worker is not False:  # functions pass False: the retention job retries there
        runtime.erasure_worker = BackgroundWorker(
            runtime.retry_erasures, ERASURE_RETRY_SECONDS, "erasure-retry"
        )
        runtime.erasure_worker.start()
    return runtime


def connect_redis(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Short timeouts and one immediate retry (a connection left stale by a Redis restart):
    # Redis is a cache here, and a slow cache must not slow chat down. redis-py's default
    # (10 retries with backoff) holds every call for seconds while Redis is down.
    return redis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 1)
    )
