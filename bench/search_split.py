"""Where a warm per-user search spends its time: client or server.

    .venv/bin/python -m bench.search_split --database compare_xxxxxxxx   # a kept database

On a database kept by ``bench.compare_stores --keep`` (users u0, u1, ...), repeats vector
searches for 50 users whose rows are in memory and prints, p50/p95 in ms: the whole
``MemoryStore.search`` call, a trivial one-round-trip read (``Pool.read`` of one integer:
BEGIN with the user, one statement, COMMIT), and the server's execution time of the same
search statement (``EXPLAIN ANALYZE`` of the prepared statement's text with the same
parameters). Client time is the search minus the server's execution, p50.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.store_bench import Latency, _latency, random_unit_vectors
from services.config import Settings
from services.db import open_pool
from services.embeddings import LocalEmbedder
from services.memories import sql
from services.memories.store import MemoryStore
from services.pgwire import vector_binary

OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search_split", description=__doc__)
    parser.add_argument("--database", required=True, help="a database kept by compare_stores")
    parser.add_argument("--data-dir", default=str(OUT / "compare_data"))
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args(argv)
    settings = Settings(data_dir=args.data_dir, db_name=args.database, embed_in_process=False)
    pool = open_pool(settings, size=1)  # one connection: the search's statement is on it
    try:
        figures = measure(pool, args.queries)
    finally:
        pool.close()
    print(json.dumps({k: v.__dict__ for k, v in figures.items()}, indent=2))
    client = figures["search"].p50_ms - figures["server_execution"].p50_ms
    print(f"client time (search p50 - server execution p50): {client:.3f} ms")


def measure(pool, queries: int) -> dict[str, Latency]:  # noqa: ANN001 - a services.db.Pool
    store = MemoryStore(pool, LocalEmbedder())
    vectors = random_unit_vectors(np.random.default_rng(9), queries + 100)
    users = [f"u{u}" for u in range(100, 150)]

    def search(i: int) -> None:
        store.search(users[i % 50], "zq", mode="vector", limit=10, query_vector=vectors[i])

    for i in range(100):
        search(i)
    total: list[float] = []
    trivial: list[float] = []
    for i in range(queries):
        start = time.perf_counter()
        search(i)
        total.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        pool.read("SELECT %s::int", [i], users[i % 50])
        trivial.append((time.perf_counter() - start) * 1000)
    statement = sql.search(approximate=False)  # what the store runs for a per-user search
    server: list[float] = []
    for i in range(min(queries, 300)):
        user = users[i % 50]
        params = [vector_binary(vectors[i]), None, user, "default", "{}", None, None, 40, 40, 10]
        with pool.transaction(user) as tx:
            plan = tx.value("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
        plan = json.loads(plan) if isinstance(plan, str) else plan
        server.append(plan[0]["Execution Time"])
    return {
        "search": _latency(total),
        "trivial_read": _latency(trivial),
        "server_execution": _latency(server),
    }


if __name__ == "__main__":
    main()
