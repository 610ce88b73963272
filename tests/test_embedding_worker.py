"""The embedding outbox: every pending memory is embedded exactly once, whoever runs it."""

from __future__ import annotations

import threading

import pytest

from services.embedding_worker import drain
from services.embeddings import EmbeddingError
from services.memories.records import NewMemory
from tests.processes import unique_user


class CountingEmbedder:
    """The real local embedder, recording every text it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model = inner.model
        self.dim = inner.dim
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def embed_documents(self, texts):
        with self.lock:
            self.seen.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


class DownEmbedder(CountingEmbedder):
    def embed_documents(self, texts):
        raise EmbeddingError("provider unavailable")


def pending_count(pool, user: str) -> int:
    with pool.transaction() as tx:
        return tx.value(
            "SELECT count(*) FROM memories WHERE user_id = %s AND embedding IS NULL", [user]
        )


def test_two_concurrent_workers_embed_every_row_exactly_once(store, pool, embedder):
    user = unique_user()
    store.add_many(
        user, [NewMemory(f"distinct fact number {n} about topic {n * 7}") for n in range(60)]
    )
    counting = CountingEmbedder(embedder)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            drain(pool, counting, batch_size=8, duplicate_threshold=1.01)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []
    mine = [text for text in counting.seen if text.startswith("distinct fact number")]
    assert len(mine) == 60 and len(set(mine)) == 60
    assert pending_count(pool, user) == 0


def test_a_provider_failure_leaves_rows_pending_for_the_next_run(store, pool, embedder):
    user = unique_user()
    store.add_many(user, [NewMemory("fact while the provider is down")])
    with pytest.raises(EmbeddingError):
        drain(pool, DownEmbedder(embedder), batch_size=8, duplicate_threshold=1.01)
    assert pending_count(pool, user) == 1
    drain(pool, embedder, batch_size=8, duplicate_threshold=1.01)
    assert pending_count(pool, user) == 0


def test_an_update_makes_the_memory_pending_again(store, pool, embedder):
    user = unique_user()
    memory = store.upsert(user, "Lives in Paris", key="home").memory
    drain(pool, embedder, batch_size=8, duplicate_threshold=1.01)
    store.upsert(user, "Moved to Berlin", key="home")
    assert pending_count(pool, user) == 1
    drain(pool, embedder, batch_size=8, duplicate_threshold=1.01)
    hits = store.search(user, "which city does the user live in now?", mode="vector")
    assert hits[0].memory.id == memory.id and hits[0].memory.content == "Moved to Berlin"
