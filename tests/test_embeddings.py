"""Embedders: the real openai client against a local server speaking the Embeddings API,
and the local model's vectors."""

from __future__ import annotations

import numpy as np
import pytest

from services.config import Settings
from services.db import open_pool
from services.embedding_worker import drain
from services.embeddings import EmbeddingError, OpenAIEmbedder, embedding_spec, make_embedder
from services.memories.store import MemoryStore
from services.migrate import migrate
from tests.fakes.llm_server import Failure, FakeLLMServer
from tests.processes import make_database_url, unique_user


@pytest.fixture
def fake():
    with FakeLLMServer() as server:
        yield server


def openai_settings(fake: FakeLLMServer, **extra) -> Settings:
    return Settings(openai_api_key="sk-test", openai_base_url=fake.openai_base_url, **extra)


def test_openai_is_chosen_when_a_key_is_set_and_gives_1536_dims(fake):
    settings = openai_settings(fake)
    assert embedding_spec(settings) == ("text-embedding-3-small", 1536)
    embedder = make_embedder(settings)
    vectors = embedder.embed_documents(["first text", "second text"])
    assert vectors.shape == (2, 1536)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    [request] = fake.requests
    assert request.body["model"] == "text-embedding-3-small"
    assert request.body["input"] == ["first text", "second text"]
    assert request.headers.get("authorization") == "Bearer sk-test"


def test_documents_are_sent_in_batches(fake):
    from openai import OpenAI

    client = OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0)
    embedder = OpenAIEmbedder(client, "text-embedding-3-small", 1536, max_batch=4)
    vectors = embedder.embed_documents([f"text {n}" for n in range(10)])
    assert vectors.shape == (10, 1536)
    assert [len(r.body["input"]) for r in fake.requests] == [4, 4, 2]
    # Order is kept across batches: the same text embeds to the same vector alone.
    assert np.allclose(vectors[7], embedder.embed_query("text 7"), atol=1e-5)


def test_rate_limits_and_server_errors_are_retried(fake):
    fake.script("embeddings", Failure.rate_limited(retry_after=0.01), Failure.server_error())
    vectors = make_embedder(openai_settings(fake)).embed_documents(["retry me"])
    assert vectors.shape == (1, 1536)
    assert len(fake.requests) == 3


def test_a_provider_that_stays_down_raises_an_embedding_error(fake):
    fake.fail_always("embeddings", Failure(500, "down"))
    from openai import OpenAI

    client = OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=1)
    with pytest.raises(EmbeddingError):
        OpenAIEmbedder(client, "text-embedding-3-small", 1536).embed_documents(["x"])


def test_a_1536_dim_database_round_trip_with_openai(fake, pg_socket):
    import uuid

    settings = openai_settings(
        fake, database_url=make_database_url(pg_socket, f"t_openai_{uuid.uuid4().hex[:8]}")
    )
    pool = open_pool(settings)
    try:
        migrate(pool, *embedding_spec(settings), hnsw_index=False)
        embedder = make_embedder(settings)
        store = MemoryStore(pool, embedder)
        user = unique_user()
        memory = store.upsert(user, "enjoys sailing on the lake").memory
        store.upsert(user, "works night shifts at the bakery")
        assert drain(pool, embedder, batch_size=16, duplicate_threshold=1.01).embedded == 2
        hits = store.search(user, "sailing lake", mode="vector")
        assert hits[0].memory.id == memory.id
        with pool.transaction() as tx:
            assert tx.value("SELECT vector_dims(embedding) FROM memories LIMIT 1") == 1536
    finally:
        pool.close()


def test_local_embedder_puts_paraphrases_closer_than_unrelated_text(embedder):
    a, b, c = embedder.embed_documents(
        ["The user is vegetarian", "The user does not eat meat", "The user drives a red car"]
    )
    assert embedder.dim == 384
    assert float(a @ b) > float(a @ c)


def test_the_outbox_records_what_paid_embeddings_cost_per_user(fake, pg_socket):
    import uuid

    settings = openai_settings(
        fake, database_url=make_database_url(pg_socket, f"t_cost_{uuid.uuid4().hex[:8]}")
    )
    pool = open_pool(settings)
    try:
        migrate(pool, *embedding_spec(settings), hnsw_index=False)
        embedder = make_embedder(settings)
        store = MemoryStore(pool, embedder)
        alice, bob = unique_user("alice"), unique_user("bob")
        store.upsert(alice, "enjoys sailing on the lake in summer")
        store.upsert(alice, "keeps bees")
        store.upsert(bob, "collects vinyl records")
        assert drain(pool, embedder, batch_size=16, duplicate_threshold=1.01).embedded == 3
        assert [len(r.body["input"]) for r in fake.requests] == [3]  # one batch, two users
        with pool.transaction() as tx:
            rows = dict(
                tx.execute(
                    "SELECT user_id, sum(input_tokens) FROM usage WHERE kind = 'embedding' "
                    "AND model = 'text-embedding-3-small' GROUP BY user_id"
                )
            )
            cost = tx.value("SELECT sum(cost_usd) FROM usage WHERE kind = 'embedding'")
        assert set(rows) == {alice, bob} and rows[alice] > rows[bob]
        # shared out by text length, rounded per user: the provider's own count, give or take
        assert abs(sum(rows.values()) - embedder.last_usage_tokens) <= len(rows)
        assert float(cost) > 0
    finally:
        pool.close()
