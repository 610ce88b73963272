"""Hostile-input benchmark: generated hostile requests against a real gunicorn.

    .venv/bin/python -m bench.hostile                  # 6,000 requests, seed 12
    .venv/bin/python -m bench.hostile --count 6000 --seed 7

Every operation of the OpenAPI document gets hostile values (lone surrogates, NUL,
bidirectional marks, megabyte strings, nesting 100,000 deep, NaN, broken JSON, numbers past
every limit) in every slot: path and query parameters, headers, each body field, metadata
keys and values, chat message content, the whole body (tests/hostile_inputs.py). First
each fixed value in each slot in a seeded order, then seeded mixes of hostile characters.
Each operation runs as its own user, who has a memory and a thread, so ids name real rows.

The service is ``gunicorn --config gunicorn.conf.py main:app`` on a fresh database of the
embedded PostgreSQL, the LLM and the embeddings are the wire-level fake (through the real
SDKs). Prints the total, the 5xx responses, the error responses whose body is not the JSON
error shape, transport failures, and the counts per operation; then the time one chat turn
takes to get the offline answer while the provider hangs, with the default timeout, retries
and turn deadline. Writes bench/out/hostile.json. Target: 0 and 0; the offline answer
within the deadline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from services.auth import ApiKeyStore
from services.config import Settings
from services.db import embedded_socket, open_pool, start_embedded_server
from services.embeddings import embedding_spec
from services.migrate import migrate
from tests.fakes.llm_server import Failure, FakeLLMServer
from tests.hostile_inputs import Request, encode, generated, operations
from tests.processes import Gunicorn, make_database_url

OUT = Path(__file__).resolve().parent / "out"


def send(port: int, request: Request, timeout: float = 60) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        headers = {**request.headers, "Connection": "close"}
        if request.body is not None:
            headers["Content-Length"] = str(len(request.body))
        for name, value in headers.items():
            connection.putheader(name, value.encode("latin-1"))
        connection.endheaders(request.body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def is_json_error(content_type: str, body: bytes) -> bool:
    if not content_type.startswith("application/json"):
        return False
    try:
        error = json.loads(body)["error"]
        return isinstance(error["code"], str) and isinstance(error["message"], str)
    except (ValueError, KeyError, TypeError):
        return False


def seed_user(port: int, keys: ApiKeyStore) -> tuple[str, dict[str, str]]:
    _, secret = keys.create(f"hostile-{uuid.uuid4().hex[:8]}")
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    _, _, memory = send(
        port, Request("POST", "/v1/memories", auth, json.dumps({"content": "seed"}).encode())
    )
    _, _, chat = send(
        port, Request("POST", "/v1/chat", auth, json.dumps({"message": "hi"}).encode())
    )
    return secret, {
        "memory_id": json.loads(memory)["id"],
        "thread_id": json.loads(chat)["thread_id"],
    }


def hung_provider_turn(port: int, llm: FakeLLMServer, keys: ApiKeyStore) -> dict:
    """One chat turn while the provider accepts the request and never answers."""
    llm.fail_always("anthropic", Failure(503, "hung", delay_s=600))
    try:
        _, secret = keys.create(f"hung-{uuid.uuid4().hex[:8]}")
        auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        body = json.dumps({"message": "What do I like to drink?"}).encode()
        started = time.perf_counter()
        status, _, reply = send(port, Request("POST", "/v1/chat", auth, body), timeout=300)
        seconds = time.perf_counter() - started
    finally:
        llm.fail_always("anthropic", None)
    final = json.loads(reply).get("final", {})
    return {
        "deadline_s": Settings().llm_turn_deadline_seconds,
        "seconds": round(seconds, 2),
        "status": status,
        "offline": final.get("offline"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6000, help="hostile requests to send")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--no-hung", action="store_true", help="skip the hung-provider turn (~30 s)"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    server = start_embedded_server(workdir / "pg")
    llm = FakeLLMServer().start()
    env = {
        "DATABASE_URL": make_database_url(
            embedded_socket(server), f"hostile_{uuid.uuid4().hex[:8]}"
        ),
        "EMBED_IN_PROCESS": "false",
        "LLM_PROVIDERS": "anthropic",
        "ANTHROPIC_API_KEY": "sk-ant-bench",
        "ANTHROPIC_BASE_URL": llm.anthropic_base_url,
        # The fake's embeddings: the local model spends seconds of CPU on each long query.
        "EMBEDDING_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": llm.openai_base_url,
        "RATE_LIMIT_PER_MINUTE": "10000000",
        "RATE_LIMIT_BURST": "1000000",
    }
    settings = Settings.from_env(env)
    pool = open_pool(settings)
    migrate(pool, *embedding_spec(settings), settings.hnsw_index)
    keys = ApiKeyStore(pool)
    gunicorn = Gunicorn(env)
    try:
        users = {op.label: seed_user(gunicorn.port, keys) for op in operations()}
        per_operation: dict[str, Counter] = defaultdict(Counter)
        failures: list[dict] = []
        started = time.perf_counter()
        for operation, slot, value in generated(args.seed, args.count):
            secret, ids = users[operation.label]
            request = encode(operation, slot, value, secret=secret, ids=ids)
            counts = per_operation[operation.label]
            counts["requests"] += 1
            try:
                status, content_type, body = send(gunicorn.port, request)
            except (OSError, http.client.HTTPException) as error:
                counts["transport_errors"] += 1
                failures.append({"op": operation.label, "slot": slot, "error": repr(error)})
                continue
            counts[f"{status // 100}xx"] += 1  # "5xx" among them
            non_json = status >= 400 and not is_json_error(content_type, body)
            counts["non_json_errors"] += non_json
            if status >= 500 or non_json:
                failures.append(
                    {
                        "op": operation.label,
                        "slot": slot,
                        "value": value.text[:80],
                        "status": status,
                        "body": body[:200].decode("utf-8", "replace"),
                    }
                )
        seconds = time.perf_counter() - started
        hung = None if args.no_hung else hung_provider_turn(gunicorn.port, llm, keys)
    finally:
        gunicorn.stop()
        pool.close()
        llm.stop()
        server.cleanup()

    total = sum(c["requests"] for c in per_operation.values())
    result = {
        "command": "python -m bench.hostile " + " ".join(argv or []),
        "seed": args.seed,
        "requests": total,
        "5xx": sum(c["5xx"] for c in per_operation.values()),
        "non_json_errors": sum(c["non_json_errors"] for c in per_operation.values()),
        "transport_errors": sum(c["transport_errors"] for c in per_operation.values()),
        "seconds": round(seconds, 1),
        "hung_provider": hung,
        "per_operation": {label: dict(c) for label, c in sorted(per_operation.items())},
        "failures": failures[:50],
    }
    print(f"requests: {total} in {result['seconds']} s (seed {args.seed})")
    print(f"5xx responses: {result['5xx']}")
    print(f"non-JSON error bodies: {result['non_json_errors']}")
    print(f"transport errors: {result['transport_errors']}")
    print(f"{'operation':<36} {'requests':>8} {'2xx':>6} {'4xx':>6} {'5xx':>5} {'non-JSON':>8}")
    for label, c in result["per_operation"].items():
        print(
            f"{label:<36} {c['requests']:>8} {c.get('2xx', 0):>6} {c.get('4xx', 0):>6} "
            f"{c.get('5xx', 0):>5} {c.get('non_json_errors', 0):>8}"
        )
    if hung is not None:
        print(
            f"hung provider (LLM_TIMEOUT_SECONDS=60, LLM_MAX_RETRIES=2, the default "
            f"{hung['deadline_s']:g} s deadline): offline answer after {hung['seconds']} s, "
            f"status {hung['status']}, offline={hung['offline']}"
        )
    for failure in failures[:10]:
        print("failure:", failure)
    OUT.mkdir(exist_ok=True)
    (OUT / "hostile.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
