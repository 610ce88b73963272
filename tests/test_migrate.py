"""Migrations: idempotent, safe when several instances start at once, strict about models."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.config import Settings
from services.db import open_pool
from services.migrate import EmbeddingModelMismatch, migrate, migration_files
from tests.processes import make_database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_url(pg_socket) -> str:
    return make_database_url(pg_socket, f"t_migrate_{uuid.uuid4().hex[:8]}")


def run_cli(url: str, *args: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "DATABASE_URL": url, "EMBED_IN_PROCESS": "false", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "services.migrate", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_migrations_are_idempotent(fresh_url):
    pool = open_pool(Settings(database_url=fresh_url))
    try:
        first = migrate(pool, "multilingual-e5-small", 384, hnsw_index=False)
        again = migrate(pool, "multilingual-e5-small", 384, hnsw_index=False)
        assert first == [path.name for path in migration_files()]
        assert again == []
        with pool.transaction() as tx:
            assert tx.value("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    finally:
        pool.close()


def test_two_processes_migrating_at_once_both_succeed(fresh_url):
    processes = [run_cli(fresh_url) for _ in range(3)]
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], results
    logs = " ".join(err for _, err in results)
    assert logs.count("001_memories.sql") == 1, results  # applied by exactly one of them
    said = sorted(out.strip() for out, _ in results)
    assert said[0].startswith("database is up to date (") and "applied" in said[0], said
    assert said[1:] == ["database is up to date (nothing was pending)"] * 2, said


def test_another_embedding_model_is_refused_with_instructions(fresh_url):
    pool = open_pool(Settings(database_url=fresh_url))
    try:
        migrate(pool, "multilingual-e5-small", 384, hnsw_index=False)
        with pytest.raises(EmbeddingModelMismatch) as raised:
            migrate(pool, "text-embedding-3-small", 1536, hnsw_index=False)
        assert "--reembed" in str(raised.value)
    finally:
        pool.close()
    # The CLI says the same and exits non-zero.
    process = run_cli(fresh_url, EMBEDDING_PROVIDER="openai", OPENAI_API_KEY="sk-test")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "--reembed" in err


def test_reembed_switches_the_vector_dimension_and_marks_rows_pending(fresh_url):
    pool = open_pool(Settings(database_url=fresh_url))
    try:
        migrate(pool, "multilingual-e5-small", 384, hnsw_index=False)
        with pool.transaction() as tx:
            tx.execute(
                "INSERT INTO memories (user_id, key, content, tsv, embedding) "
                "VALUES ('u', 'k', 'c', ''::tsvector, %s::vector)",
                ["[" + ",".join(["0.05"] * 384) + "]"],
            )
    finally:
        pool.close()
    process = run_cli(fresh_url, "--reembed", EMBEDDING_PROVIDER="openai", OPENAI_API_KEY="sk-test")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "1 memories wait to be embedded" in out
    pool = open_pool(Settings(database_url=fresh_url))
    try:
        migrate(pool, "text-embedding-3-small", 1536, hnsw_index=False)  # now accepted
        with pool.transaction() as tx:
            assert tx.value("SELECT count(*) FROM memories WHERE embedding IS NULL") == 1
    finally:
        pool.close()


def test_the_opt_in_hnsw_index_is_created_and_dropped(fresh_url):
    pool = open_pool(Settings(database_url=fresh_url))

    def has_index() -> bool:
        with pool.transaction() as tx:
            return bool(tx.value("SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%%hnsw%%'"))

    try:
        migrate(pool, "multilingual-e5-small", 384, hnsw_index=False)
        assert not has_index()
        migrate(pool, "multilingual-e5-small", 384, hnsw_index=True)
        assert has_index()
        migrate(pool, "multilingual-e5-small", 384, hnsw_index=False)
        assert not has_index()
    finally:
        pool.close()


def test_a_namespace_above_the_hnsw_threshold_is_searched_through_the_index(fresh_url, embedder):
    import numpy as np

    from services.memories.records import NewMemory, StoreLimits
    from services.memories.store import MemoryStore

    pool = open_pool(Settings(database_url=fresh_url))
    try:
        migrate(pool, embedder.model, embedder.dim, hnsw_index=True)
        rng = np.random.default_rng(5)
        vectors = rng.standard_normal((30, embedder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        exact = MemoryStore(pool, embedder)
        approximate = MemoryStore(pool, embedder, StoreLimits(hnsw_index=True, hnsw_min_rows=5))
        exact.add_many(
            "u-hnsw", [NewMemory(f"note {i}", embedding=v) for i, v in enumerate(vectors)]
        )
        exact.add_many("u-other", [NewMemory("other", embedding=v) for v in vectors[:10]])
        with pool.transaction("u-hnsw") as tx:
            assert approximate._uses_ann(tx, "u-hnsw", "default")
        query = vectors[7]
        for mode in ("vector", "hybrid"):
            ann = approximate.search("u-hnsw", "note", mode=mode, limit=5, query_vector=query)
            flat = exact.search("u-hnsw", "note", mode=mode, limit=5, query_vector=query)
            assert [h.memory.content for h in ann] == [h.memory.content for h in flat], mode
            assert {h.memory.user_id for h in ann} == {"u-hnsw"}
        vector = approximate.search("u-hnsw", "note", mode="vector", limit=1, query_vector=query)
        assert vector[0].memory.content == "note 7"
    finally:
        pool.close()
