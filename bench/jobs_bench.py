"""Background-jobs benchmark: embedding throughput, outbox latency, retention sweep cost.

    .venv/bin/python -m bench.jobs_bench                    # 4,000 users x 50 (200,000 rows)
    .venv/bin/python -m bench.jobs_bench --users 20000      # 1,000,000 rows
    .venv/bin/python -m bench.jobs_bench --only retention --pause-ratio 3 --batch-users 50

1. Embedding throughput of the local embedder (multilingual-e5-small) through the outbox:
   one provider call per batch of 64 vs one call per memory.
2. Pending-to-embedded latency under a steady write load: a writer adds memories at a fixed
   rate through MemoryStore, whose on_change wakes the in-process worker (the local stand-in
   for the Pub/Sub push to embed_memories); a monitor notes when each row gets its vector.
3. Retention sweep over USERS x 50 memories with 5% expired (default policy otherwise
   inert), and the p95 of per-user hybrid searches running concurrently, compared with the
   p95 of the same searches in windows before and after the sweep. The searcher runs in its
   own process by default (chat runs in Cloud Run, the sweep in a function), so the sweep
   thread's share of the GIL is not what is measured; ``--searcher thread`` reproduces the
   old single-process measurement. ``--batch-users`` and ``--pause-ratio`` set the sweep's
   chunk size and rest (RETENTION_BATCH_USERS, RETENTION_PAUSE_RATIO).

Runs in a fresh database on the embedded PostgreSQL under bench/out/ (or DATABASE_URL),
dropped afterwards unless ``--keep``. Prints the figures and writes bench/out/jobs_bench.json.
On a shared machine the other load moves every figure: the load average at the start is
recorded, and the before/after windows show the drift.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from bench.lifetime import Run, cleanup
from services.archive import LocalArchive
from services.config import Settings
from services.db import Pool, open_pool
from services.embedding_worker import BackgroundWorker, drain
from services.embeddings import LOCAL_MODEL, LocalEmbedder
from services.memories.records import NewMemory
from services.memories.store import MemoryStore
from services.migrate import migrate
from services.progress import reporter
from services.retention import RetentionJob, RetentionPolicy, run_retention
from services.threads import ThreadStore

OUT = Path(__file__).resolve().parent / "out"
DIM = 384
PER_USER = 50
WORDS = ["coffee", "hiking", "piano", "berlin", "python", "garden", "sushi", "chess", "yoga"]


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[int(0.95 * (len(ordered) - 1))], 2)


def p50(samples: list[float]) -> float:
    return round(statistics.median(samples), 2)


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
    with reporter("loading", unit="rows", total=total) as progress:
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
            progress(min(offset + chunk, total), None)
    with pool.connection() as conn:
        conn.cursor().execute("VACUUM ANALYZE memories")
    return time.perf_counter() - start


class VectorOnly:
    """What MemoryStore.search needs when the query vector is given: the model's name and
    dimension (the searcher process does not load the embedding model)."""

    model, dim = LOCAL_MODEL, DIM

    def embed_query(self, text: str):
        raise RuntimeError("the benchmark searcher passes query vectors")

    embed_documents = embed_query


def search_loop(store: MemoryStore, users: int, stop, out: list[float], seed: int = 11) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        vector = rng.standard_normal(DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        user = f"sweep-{int(rng.integers(0, users)):07d}"
        started = time.perf_counter()
        store.search(user, f"{WORDS[int(rng.integers(0, 9))]} plans", query_vector=vector)
        out.append((time.perf_counter() - started) * 1000)


def search_process(settings: Settings, users: int, stop, ready, results, seed: int) -> None:
    """The searcher in its own process (as chat runs in Cloud Run, apart from the function),
    so what is measured is the database, not the GIL shared with the sweep's thread."""
    pool = open_pool(settings)
    store = MemoryStore(pool, VectorOnly())
    warm: list[float] = []
    warm_stop = threading.Event()
    timer = threading.Timer(1.0, warm_stop.set)
    timer.start()
    search_loop(store, users, warm_stop, warm, seed)  # connections and plans warmed up
    ready.set()
    out: list[float] = []
    search_loop(store, users, stop, out, seed + 1)
    results.put(out)
    pool.close()


class Searcher:
    """Per-user searches in a child process (default) or a thread of this process."""

    def __init__(self, settings: Settings, store: MemoryStore, users: int, mode: str) -> None:
        self.settings, self.store, self.users, self.mode = settings, store, users, mode
        self.seed = 11

    def measure(self, during=None, seconds: float = 0.0) -> tuple[list[float], object]:
        """Search while ``during()`` runs (or for ``seconds``); returns the latencies (ms)
        and what ``during`` returned."""
        self.seed += 2
        if self.mode == "thread":
            stop, out = threading.Event(), []
            worker = threading.Thread(target=search_loop, args=(self.store, self.users, stop, out))
            worker.start()
            result = during() if during else time.sleep(seconds)
            stop.set()
            worker.join()
            return out, result
        context = multiprocessing.get_context("spawn")
        stop, ready, results = context.Event(), context.Event(), context.Queue()
        child = context.Process(
            target=search_process,
            args=(self.settings, self.users, stop, ready, results, self.seed),
        )
        child.start()
        if not ready.wait(120):
            child.kill()
            raise RuntimeError("the searcher process did not start")
        result = during() if during else time.sleep(seconds)
        stop.set()
        out = results.get(timeout=120)
        child.join(30)
        return out, result


def retention_sweep(
    pool: Pool,
    store: MemoryStore,
    settings: Settings,
    users: int,
    baseline_s: float,
    *,
    searcher_mode: str,
    batch_users: int,
    pause_ratio: float,
) -> dict:
    print(f"retention: loading {users * PER_USER:,} memories (5% expired)")
    load_s = bulk_load(pool, users)
    searcher = Searcher(settings, store, users, searcher_mode)
    before, _ = searcher.measure(seconds=baseline_s)

    policy = RetentionPolicy(0, 0, 1.01, 0, 0)  # only expiry acts
    with tempfile.TemporaryDirectory() as tmp:
        job = RetentionJob(
            pool,
            LocalArchive(Path(tmp)),
            ThreadStore(pool),
            policy,
            LOCAL_MODEL,
            batch_users,
            pause_ratio=pause_ratio,
        )

        def sweep():
            start = time.perf_counter()
            with reporter("retention sweep", unit="users", total=users) as progress:
                report = run_retention(job, budget_seconds=3600, progress=progress)
            return report, time.perf_counter() - start

        during, (report, sweep_s) = searcher.measure(during=sweep)
    after, _ = searcher.measure(seconds=baseline_s)
    with pool.transaction() as tx:
        left = tx.value("SELECT count(*) FROM memories WHERE user_id LIKE 'sweep-%'")
    baseline = p95(before + after)
    return {
        "rows": users * PER_USER,
        "searcher": searcher_mode,
        "batch_users": batch_users,
        "pause_ratio": pause_ratio,
        "load_s": round(load_s, 1),
        "sweep_s": round(sweep_s, 1),
        "rows_per_s": round(users * PER_USER / sweep_s),
        "deleted": report.counts.get("memories.retention:expired", 0),
        "rows_left": int(left),
        "complete": report.complete,
        "search_p95_ms_before_sweep": p95(before),
        "search_p95_ms_during_sweep": p95(during),
        "search_p95_ms_after_sweep": p95(after),
        "search_p50_ms": [p50(before), p50(during), p50(after)],
        "searches": [len(before), len(during), len(after)],
        "p95_ratio": round(p95(during) / baseline, 2),
    }


DESCRIPTION = """\
Background jobs benchmark: how fast the embedding worker embeds memories (in batches and
one at a time), how long a memory waits for its vector under a steady write load, and
what the daily retention sweep over many users costs, measured as the slowdown of chat
searches running at the same time. Writes bench/out/jobs_bench.json."""

EPILOG = """\
Examples:
  .venv/bin/python -m bench.jobs_bench                    # 4,000 users x 50 (200,000 rows)
  .venv/bin/python -m bench.jobs_bench --users 20000      # 1,000,000 rows
  .venv/bin/python -m bench.jobs_bench --only retention --pause-ratio 3 --batch-users 50

Runs in a fresh database on the embedded PostgreSQL under bench/out/ (or DATABASE_URL),
dropped at the end (also on Ctrl-C) unless --keep."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs_bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=4_000, help="users x 50 memories swept")
    parser.add_argument(
        "--embed-rows", type=int, default=256, help="memories embedded per way (256)"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="steady writes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-write duration")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=10.0,
        help="search timing before and after the sweep (10)",
    )
    parser.add_argument(
        "--only", choices=("all", "embedding", "retention"), default="all", help="which part"
    )
    parser.add_argument(
        "--searcher",
        choices=("process", "thread"),
        default="process",
        help="run the concurrent searches in a child process (default) or a thread of the "
        "sweep's process (then the GIL is part of what is measured)",
    )
    parser.add_argument(
        "--batch-users",
        type=int,
        default=Settings.retention_batch_users,
        help="users per sweep chunk (RETENTION_BATCH_USERS)",
    )
    parser.add_argument(
        "--pause-ratio",
        type=float,
        default=Settings.retention_pause_ratio,
        help="rest after each chunk, as a multiple of its time (RETENTION_PAUSE_RATIO)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args(argv)
    with cleanup() as scope:
        results = run_all(args, scope)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "jobs_bench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def run_all(args: argparse.Namespace, scope: Run) -> dict[str, object]:
    settings = Settings(
        database_url=os.environ.get("DATABASE_URL", ""),
        data_dir=str(OUT / "data"),
        db_name=f"jobs_{uuid.uuid4().hex[:8]}",
        embed_in_process=False,
    )
    if not settings.database_url:
        scope.postgres(Path(settings.data_dir) / "pg")
        if not args.keep:
            scope.callback(drop_database, settings)
    pool = open_pool(settings)
    scope.callback(pool.close)
    migrate(pool, LOCAL_MODEL, DIM, hnsw_index=False)
    results: dict[str, object] = {"database": settings.db_name, "cpus": os.cpu_count()}
    results["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if args.only in ("all", "embedding"):
        embedder = LocalEmbedder()
        embedder.embed_documents(["warm up"])
        store = MemoryStore(pool, embedder)
        print("embedding throughput (local embedder)")
        results["embedding_throughput"] = embedding_throughput(
            pool, store, embedder, args.embed_rows
        )
        print(json.dumps(results["embedding_throughput"]))
        print(f"outbox latency at {args.rate}/s for {args.seconds}s")
        results["outbox_latency"] = outbox_latency(pool, embedder, args.rate, args.seconds)
        print(json.dumps(results["outbox_latency"]))
    if args.only in ("all", "retention"):
        results["retention"] = retention_sweep(
            pool,
            MemoryStore(pool, VectorOnly()),
            settings,
            args.users,
            args.baseline_seconds,
            searcher_mode=args.searcher,
            batch_users=args.batch_users,
            pause_ratio=args.pause_ratio,
        )
        print(json.dumps(results["retention"]))
    return results


def drop_database(settings: Settings) -> None:
    """The benchmark's database is large (GBs at 1M rows): drop it unless --keep."""
    import pg8000.dbapi

    from services.db import embedded_socket, start_embedded_server

    sock = embedded_socket(start_embedded_server(Path(settings.data_dir) / "pg"))
    conn = pg8000.dbapi.connect(user="postgres", unix_sock=sock, database="postgres")
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{settings.db_name}" WITH (FORCE)')
    conn.close()


if __name__ == "__main__":
    main()
