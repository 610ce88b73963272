"""Wiring: builds the long-lived objects of one process from Settings, and tears them down.

Everything here is constructed once per process and handed to the app factory and the
function handlers; nothing else in services/ reaches for globals. The runtime also decides
which pool each service runs on, so no handler ever chooses a security boundary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from services.account import Account
from services.agent import Agent, AgentConfig
from services.archive import Archive, make_archive
from services.config import Settings
from services.db import APP_ROLE, JOBS_ROLE, Pool, Source, connection_source, open_pool
from services.embedding_worker import BackgroundWorker, drain
from services.embeddings import (
    CachedQueryEmbedder,
    Embedder,
    duplicate_threshold,
    embedding_spec,
    make_embedder,
)
from services.errors import DatabaseUnavailable
from services.idempotency import Idempotency
from services.llm.factory import WarmingRouter, build_router
from services.memories.records import StoreLimits
from services.memories.store import MemoryStore
from services.migrate import migrate
from services.privacy import Erasure
from services.publisher import Publisher, make_publisher
from services.retention import default_policy
from services.threads import ThreadStore
from services.usage import UsageRecorder

log = logging.getLogger(__name__)

# The erasure retry loop: how often it looks for due work, and how much one pass may take.
ERASURE_RETRY_SECONDS = 5.0
ERASURE_PASS_SECONDS = 10.0
ERASURE_PASS_LIMIT = 50


@dataclass(frozen=True)
class Runtime:
    """What the service and the functions run on.

    Two pools on one database. ``user_pool`` connects as memory_agent_app, which row-level
    security confines to the user each transaction names: every service done for one caller
    runs there (``memories``, ``threads``, ``usage``, ``agent``, ``account``,
    ``idempotency``), so a query that forgets its user filter still sees only that user.
    ``pool`` connects as memory_agent_jobs, for work that spans users (embedding,
    retention, reflection's bookkeeping, ``erasure``, API keys).
    """

    settings: Settings
    pool: Pool
    user_pool: Pool
    embedder: Embedder
    memories: MemoryStore
    threads: ThreadStore
    redis: Any | None
    archive: Archive
    agent: Agent | None = None  # None: a runtime without a model (tests of the functions)
    usage: UsageRecorder | None = None
    publisher: Publisher | None = None
    workers: tuple[BackgroundWorker, ...] = ()  # started by build_runtime, stopped by close
    source: Source | None = None  # where both pools connect; closed after them

    @property
    def account(self) -> Account:
        """The caller's own data as a whole (spend, export, retention, erasure status,
        restore), on the user-scoped pool."""
        return Account(
            self.user_pool, self.archive, default_policy(self.settings), self.embedder.model
        )

    @property
    def idempotency(self) -> Idempotency:
        """Idempotency-Key records, on the user-scoped pool."""
        return Idempotency(self.user_pool)

    @property
    def erasure(self) -> Erasure:
        """Filing and carrying out erasure requests, on the jobs pool: it writes the erasure
        record, which the user-scoped role may only read."""
        return Erasure(self.pool, self.redis, self.archive)

    def pool_ping(self) -> None:
        with self.pool.transaction() as tx:
            tx.execute("SELECT 1")

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.pool.close()
        if self.user_pool is not self.pool:
            self.user_pool.close()
        if self.source is not None:
            self.source.close()
        if self.redis is not None:
            self.redis.close()


@dataclass(frozen=True)
class Announcer:
    """After a committed write: publish the ids for embed_memories, wake the local worker."""

    publisher: Publisher | None
    worker: BackgroundWorker | None

    def __call__(self, memory_ids: list[str]) -> None:
        if self.publisher is not None:
            self.publisher.publish(memory_ids)
        if self.worker is not None:
            self.worker.wake()


def embed_outbox(pool: Pool, embedder: Embedder, memories: MemoryStore, settings: Settings) -> int:
    """One pass of the outbox (and the batched access stats); returns rows embedded."""
    run = drain(
        pool,
        embedder,
        batch_size=settings.embed_batch_size,
        duplicate_threshold=duplicate_threshold(settings, embedder.model),
    )
    memories.flush_access_stats()
    return run.embedded


def retry_erasures(erasure: Erasure) -> None:
    """One pass of the erasure retry loop (requests whose retry is due, then the Redis
    copies of deleted threads Redis could not drop at the time)."""
    try:
        erasure.retry_due(time.monotonic() + ERASURE_PASS_SECONDS, ERASURE_PASS_LIMIT)
    except DatabaseUnavailable:  # the pool has said so; the next pass tries again
        return


def build_runtime(settings: Settings, *, start_worker: bool | None = None) -> Runtime:
    """The runtime, every service bound to its pool; ``start_worker`` False (the functions,
    the jobs command) runs no background thread: they are the workers."""
    source = connection_source(settings)  # one server (and one supervisor) for both pools
    pool = open_pool(
        settings, role=JOBS_ROLE, size=max(2, settings.db_pool_size // 4), source=source
    )
    user_pool = open_pool(settings, role=APP_ROLE, source=source)
    model, dim = embedding_spec(settings)
    migrate(pool, model, dim, settings.hnsw_index)  # as the login user, before the roles
    embedder = CachedQueryEmbedder(make_embedder(settings))
    redis_client = connect_redis(settings.redis_url) if settings.redis_url else None
    archive = make_archive(settings)
    publisher = make_publisher(settings)
    embedding_worker = (
        BackgroundWorker(
            # ``memories`` is bound just below, before the worker starts.
            lambda: embed_outbox(pool, embedder, memories, settings),
            settings.embed_poll_seconds,
            "embedding-outbox",
        )
        if (settings.embed_in_process if start_worker is None else start_worker)
        else None
    )
    memories = MemoryStore(
        user_pool,
        embedder,
        StoreLimits(
            max_content_chars=settings.max_content_chars,
            hnsw_index=settings.hnsw_index,
            hnsw_min_rows=settings.hnsw_min_rows,
        ),
        on_change=Announcer(publisher, embedding_worker),
        jobs_pool=pool,
    )
    threads = ThreadStore(user_pool, redis_client, ttl_seconds=settings.thread_cache_ttl_seconds)
    usage = UsageRecorder(user_pool)
    workers = [embedding_worker] if embedding_worker is not None else []
    if start_worker is not False:  # functions pass False: the retention job retries there
        erasure = Erasure(pool, redis_client, archive)
        workers.append(
            BackgroundWorker(
                lambda: retry_erasures(erasure), ERASURE_RETRY_SECONDS, "erasure-retry"
            )
        )
    runtime = Runtime(
        settings=settings,
        pool=pool,
        user_pool=user_pool,
        embedder=embedder,
        memories=memories,
        threads=threads,
        redis=redis_client,
        archive=archive,
        agent=Agent(
            memories,
            threads,
            WarmingRouter(lambda: build_router(settings)),
            usage,
            config=AgentConfig.from_settings(settings),
        ),
        usage=usage,
        publisher=publisher,
        workers=tuple(workers),
        source=source,
    )
    for worker in runtime.workers:
        worker.start()
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
