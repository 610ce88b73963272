"""Background-jobs benchmark: embedding throughput, outbox latency, retention sweep cost.

    .venv/bin/python -m bench.jobs_bench                    # 4,000 users x 50 (200,000 rows)
    .venv/bin/python -m bench.jobs_bench --users 20000      # the issue's 1,000,000 rows

1. Embedding throughput of the local embedder (multilingual-e5-small) through the outbox:
   one provider call per batch of 64 vs one call per memory.
2. Pending-to-embedded latency under a steady write load: a writer adds memories at a fixed
   rate through MemoryStore, whose on_change wakes the in-process worker (the local stand-in
   for the Pub/Sub push to embed_memories); a monitor notes when each row gets its vector.
3. Retention sweep over USERS x 50 memories with 5% expired (default policy otherwise
   inert), and the p95 of per-user hybrid searches running concurrently, compared with the
   p95 of the same searches without the sweep.

Runs in a fresh database on the embedded PostgreSQL under bench/out/ (or DATABASE_URL).
Prints the figures and writes bench/out/jobs_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from services.archive import LocalArchive
from services.config import Settings
from services.db import Pool, open_pool
from services.embeddings import LOCAL_MODEL, LocalEmbedder
from services.memories import MemoryStore, NewMemory
from services.migrate import migrate
from services.outbox import BackgroundWorker, drain
from services.retention import RetentionJob, RetentionPolicy, run_retention
from services.threads import ThreadStore

OUT = Path(__file__).resolve().parent / "out"
DIM = 384
PER_USER = 50
WORDS = ["coffee", "hiking", "piano", "berlin", "python", "garden", "sushi", "chess", "yoga"]


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[int(0.95 * (len(ordered) - 1))], 2)


def embedding_throughput(pool: Pool, store: MemoryStore, embedder, rows: int) -> dict:
    out = {}
    for label, batch in (("batched_64", 64), ("one_at_a_time", 1)):
        texts = [f"The user said fact {i} about {WORDS[i % 9]} ({label})" for i in range(rows)]
        store.add_many(f"embed-{label}", [NewMemory(text) for text in texts])
        start = time.perf_counter()
        run = drain(pool, embedder, batch_size=batch, duplicate_threshold=1.01)
        seconds = time.perf_counter() - start
        out[label] = {"memories": run.embedded, "per_s": round(run.embedded / seconds, 1)}
    out["speedup"] = round(out["batched_64"]["per_s"] / out["one_at_a_time"]["per_s"], 2)
    return out


def outbox_latency(pool: Pool, embedder, rate: float, seconds: float) -> dict:
    """Steady writes at ``rate``/s; latency from commit to the vector being visible."""
    worker_box: dict[str, BackgroundWorker] = {}
    store = MemoryStore(pool, embedder, on_change=lambda ids: worker_box["w"].wake())
    worker = BackgroundWorker(
        lambda: drain(pool, embedder, batch_size=64, duplicate_threshold=1.01), 0.5, "bench"
    )
    worker_box["w"] = worker
    worker.start()
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def monitor() -> None:
        give_up = time.perf_counter() + seconds + 60
        while (not stop.is_set() or len(seen) < len(written)) and time.perf_counter() < give_up:
            with lock:
                waiting = [i for i in written if i not in seen]
            if waiting:
                with pool.transaction() as tx:
                    done = tx.execute(
                        "SELECT id::text FROM memories WHERE id = ANY(%s::uuid[]) "
                        "AND embedding IS NOT NULL",
                        [waiting],
                    )
                now = time.perf_counter()
                for (memory_id,) in done:
                    seen[memory_id] = now
            time.sleep(0.01)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        due = start + n / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        written_at = time.perf_counter()
        memory = store.upsert("latency-user", f"steady write {n} about {WORDS[n % 9]}", key=f"k{n}")
        with lock:
            written[memory.memory.id] = written_at
        n += 1
    stop.set()
    watcher.join(60)
    worker.stop()
    latencies = [(seen[i] - t) * 1000 for i, t in written.items() if i in seen]
    return {
        "rate_per_s": rate,
        "writes": n,
        "embedded": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": p95(latencies),
    }


def bulk_load(pool: Pool, users: int) -> float:
    """users x 50 rows with random vectors, users interleaved, every 20th row expired."""
    start = time.perf_counter()
    total = users * PER_USER
    chunk = 50_000
    for offset in range(0, total, chunk):
        with pool.transaction() as tx:
            tx.execute(
                f"""
                INSERT INTO memories (user_id, key, content, tsv, embedding, embedding_model,
                    expires_at, updated_at)
                SELECT 'sweep-' || lpad((g %% %s::int)::text, 7, '0'), 'k' || g, c.content,
                    to_tsvector('english', c.content), l2_normalize(r.v::vector), %s,
                    CASE WHEN g %% 20 = 0 THEN now() - interval '1 day' END,
                    now() - make_interval(days => g %% 400)
                FROM generate_series(%s::int, %s::int) AS g
                CROSS JOIN LATERAL (
                    SELECT 'note about ' || w[1 + (g * 7) %% 9] || ' number ' || g AS content
                    FROM (SELECT %s::text[] AS w) AS words
                ) AS c
                CROSS JOIN LATERAL (
                    SELECT array_agg(random() - 0.5)::real[] AS v
                    FROM generate_series(1, {DIM}) WHERE g IS NOT NULL
                ) AS r
                """,
                [users, LOCAL_MODEL, offset, min(offset + chunk, total) - 1, WORDS],
            )
        print(f"  loaded {min(offset + chunk, total):,}/{total:,} rows", flush=True)
    with pool.connection() as conn:
        conn.cursor().execute("VACUUM ANALYZE memories")
    return time.perf_counter() - start


def search_loop(store: MemoryStore, users: int, stop: threading.Event, out: list[float]) -> None:
    rng = np.random.default_rng(11)
    while not stop.is_set():
        vector = rng.standard_normal(DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        user = f"sweep-{int(rng.integers(0, users)):07d}"
        started = time.perf_counter()
        store.search(user, f"{WORDS[int(rng.integers(0, 9))]} plans", query_vector=vector)
        out.append((time.perf_counter() - started) * 1000)


def retention_sweep(pool: Pool, store: MemoryStore, users: int, baseline_s: float) -> dict:
    print(f"retention: loading {users * PER_USER:,} memories (5% expired)")
    load_s = bulk_load(pool, users)
    stop = threading.Event()
    baseline: list[float] = []
    searcher = threading.Thread(target=search_loop, args=(store, users, stop, baseline))
    searcher.start()
    time.sleep(baseline_s)
    stop.set()
    searcher.join()

    policy = RetentionPolicy(0, 0, 1.01, 0, 0)  # only expiry acts
    with tempfile.TemporaryDirectory() as tmp:
        job = RetentionJob(
            pool, LocalArchive(Path(tmp)), ThreadStore(pool), policy, LOCAL_MODEL, 200
        )
        during: list[float] = []
        stop = threading.Event()
        searcher = threading.Thread(target=search_loop, args=(store, users, stop, during))
        searcher.start()
        start = time.perf_counter()
        report = run_retention(job, budget_seconds=3600)
        sweep_s = time.perf_counter() - start
        stop.set()
        searcher.join()
    with pool.transaction() as tx:
        left = tx.value("SELECT count(*) FROM memories WHERE user_id LIKE 'sweep-%'")
    return {
        "rows": users * PER_USER,
        "load_s": round(load_s, 1),
        "sweep_s": round(sweep_s, 1),
        "rows_per_s": round(users * PER_USER / sweep_s),
        "deleted": report.counts.get("memories.retention:expired", 0),
        "rows_left": int(left),
        "complete": report.complete,
        "search_p95_ms_without_sweep": p95(baseline),
        "search_p95_ms_during_sweep": p95(during),
        "searches": [len(baseline), len(during)],
        "p95_ratio": round(p95(during) / p95(baseline), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4_000, help="users x 50 memories swept")
    parser.add_argument("--embed-rows", type=int, default=256)
    parser.add_argument("--rate", type=float, default=10.0, help="steady writes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-write duration")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args()

    settings = Settings(
        database_url=os.environ.get("DATABASE_URL", ""),
        data_dir=str(OUT / "data"),
        db_name=f"jobs_{uuid.uuid4().hex[:8]}",
        embed_in_process=False,
    )
    pool = open_pool(settings)
    migrate(pool, LOCAL_MODEL, DIM, hnsw_index=False)
    embedder = LocalEmbedder()
    embedder.embed_documents(["warm up"])
    store = MemoryStore(pool, embedder)
    results: dict[str, object] = {"database": settings.db_name}
    print("embedding throughput (local embedder)")
    results["embedding_throughput"] = embedding_throughput(pool, store, embedder, args.embed_rows)
    print(json.dumps(results["embedding_throughput"]))
    print(f"outbox latency at {args.rate}/s for {args.seconds}s")
    results["outbox_latency"] = outbox_latency(pool, embedder, args.rate, args.seconds)
    print(json.dumps(results["outbox_latency"]))
    results["retention"] = retention_sweep(pool, store, args.users, args.baseline_seconds)
    print(json.dumps(results["retention"]))
    pool.close()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "jobs_bench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
