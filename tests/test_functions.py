"""The Cloud Functions invoked the way the platform invokes them: functions-framework's app
(and test client) loading a source file, real CloudEvent envelopes carrying base64 Pub/Sub
messages, HTTP requests with and without a Google-style OIDC token, and one real
``functions-framework`` process serving main.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import functions_framework
import pytest

from functions.common import ProcessRuntime
from services.archive import LocalArchive
from services.embeddings import EmbeddingError
from services.memories.store import MemoryStore
from services.runtime import Runtime
from services.threads import ThreadStore
from tests.processes import free_port, unique_user
from tests.test_oidc import AUDIENCE, SCHEDULER, LocalIssuer

ROOT = Path(__file__).resolve().parent.parent


class CountingEmbedder:
    """The real embedder, counting what it embeds; ``failing`` makes it raise like a 5xx."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model, self.dim = inner.model, inner.dim
        self.texts: list[str] = []
        self.failing = False
        self.lock = threading.Lock()

    def embed_documents(self, texts):
        if self.failing:
            raise EmbeddingError("provider answered 503")
        with self.lock:
            self.texts.extend(texts)
        time.sleep(0.02)  # widen the window in which concurrent deliveries overlap
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


class Targets:
    """What the generated function source binds to: set by the fixtures below."""

    runtime: Runtime | None = None
    issuer: LocalIssuer | None = None

    def get_runtime(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    def verifier(self, settings):
        assert self.issuer is not None
        return self.issuer.verifier()


TARGETS = Targets()

SOURCE = textwrap.dedent(
    """
    import functions_framework
    from functions.embed import pubsub_handler, sweep_handler
    from functions.retention import retention_handler
    from tests.test_functions import TARGETS

    embed_memories = functions_framework.cloud_event(pubsub_handler(TARGETS.get_runtime))
    embed_memories_sweep = functions_framework.http(
        sweep_handler(TARGETS.get_runtime, TARGETS.verifier)
    )
    apply_retention = functions_framework.http(
        retention_handler(TARGETS.get_runtime, TARGETS.verifier)
    )
    """
)


@pytest.fixture(scope="module")
def issuer():
    local = LocalIssuer()
    TARGETS.issuer = local
    yield local
    local.close()


@pytest.fixture(scope="module")
def counting(embedder):
    return CountingEmbedder(embedder)


@pytest.fixture(scope="module")
def runtime(settings, pool, counting, tmp_path_factory):
    current = Runtime(
        settings=settings,
        pool=pool,
        user_pool=pool,
        embedder=counting,
        memories=MemoryStore(pool, counting),
        threads=ThreadStore(pool),
        redis=None,
        archive=LocalArchive(tmp_path_factory.mktemp("archive")),
    )
    TARGETS.runtime = current
    return current


@pytest.fixture(scope="module")
def source(tmp_path_factory, runtime, issuer) -> str:
    path = tmp_path_factory.mktemp("fn") / "targets.py"
    path.write_text(SOURCE)
    return str(path)


@pytest.fixture(autouse=True)
def healthy(counting):
    counting.failing = False
    yield
    counting.failing = False


def client(source: str, target: str):
    return functions_framework.create_app(target, source).test_client()


def pubsub_event(memory_ids=None, *, raw_data: bytes | None = None) -> tuple[dict, bytes]:
    """A binary-mode CloudEvent as Eventarc delivers a Pub/Sub message."""
    if raw_data is None and memory_ids is not None:
        raw_data = json.dumps({"memory_ids": memory_ids}).encode()
    message = {
        "attributes": {"kind": "memory-written"},
        "messageId": str(uuid.uuid4().int)[:16],
        "publishTime": "2025-01-01T00:00:00.000Z",
    }
    if raw_data is not None:
        message["data"] = base64.b64encode(raw_data).decode()
    body = {"message": message, "subscription": "projects/p/subscriptions/eventarc-sub"}
    headers = {
        "ce-id": message["messageId"],
        "ce-specversion": "1.0",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/memory-written",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-time": "2025-01-01T00:00:00Z",
        "Content-Type": "application/json",
    }
    return headers, json.dumps(body).encode()


def add_pending(store, n: int, user: str | None = None) -> list[str]:
    user = user or unique_user()
    # Keyed, so the near-duplicate merge (keyless memories only) leaves them all in place.
    return [
        store.upsert(user, f"pending fact {i} {uuid.uuid4().hex[:6]}", key=f"k{i}").memory.id
        for i in range(n)
    ]


def embedded(pool, ids) -> int:
    with pool.transaction() as tx:
        return int(
            tx.value(
                "SELECT count(*) FROM memories WHERE id = ANY(%s::uuid[]) "
                "AND embedding IS NOT NULL",
                [ids],
            )
        )


def texts_for(counting, ids_content) -> int:
    return sum(1 for t in counting.texts if t in ids_content)


# ---- embed_memories (CloudEvent) -------------------------------------------------------------


def test_pubsub_event_embeds_the_named_memories(source, runtime, pool):
    ids = add_pending(runtime.memories, 3)
    other = add_pending(runtime.memories, 1)
    headers, body = pubsub_event(ids)
    response = client(source, "embed_memories").post("/", headers=headers, data=body)
    assert response.status_code == 200
    assert embedded(pool, ids) == 3 and embedded(pool, other) == 0


def test_structured_mode_cloudevent_is_accepted(source, runtime, pool):
    ids = add_pending(runtime.memories, 1)
    headers, body = pubsub_event(ids)
    event = {
        "specversion": "1.0",
        "id": headers["ce-id"],
        "source": headers["ce-source"],
        "type": headers["ce-type"],
        "datacontenttype": "application/json",
        "data": json.loads(body),
    }
    response = client(source, "embed_memories").post(
        "/", headers={"Content-Type": "application/cloudevents+json"}, data=json.dumps(event)
    )
    assert response.status_code == 200 and embedded(pool, ids) == 1


def test_duplicate_and_concurrent_deliveries_embed_each_row_once(source, runtime, pool, counting):
    ids = add_pending(runtime.memories, 12)
    contents = {runtime.memories.get(m.user_id, m.id).content for m in _memories(runtime, ids)}
    before = texts_for(counting, contents)
    assert before == 0
    headers, body = pubsub_event(ids)
    overlapping = pubsub_event(ids[4:] + ids[:2])
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def deliver(event) -> None:
        test_client = client(source, "embed_memories")
        barrier.wait()
        statuses.append(test_client.post("/", headers=event[0], data=event[1]).status_code)

    workers = [
        threading.Thread(target=deliver, args=((headers, body) if i % 2 else overlapping,))
        for i in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    again = client(source, "embed_memories").post("/", headers=headers, data=body)
    assert statuses == [200] * 6 and again.status_code == 200
    assert embedded(pool, ids) == 12
    assert texts_for(counting, contents) == 12  # each row went to the provider exactly once


def _memories(runtime, ids):
    with runtime.pool.transaction() as tx:
        users = dict(
            tx.execute("SELECT id::text, user_id FROM memories WHERE id = ANY(%s::uuid[])", [ids])
        )
    return [runtime.memories.get(users[i], i) for i in ids]


def test_failing_provider_leaves_rows_pending_and_the_delivery_fails(
    source, runtime, pool, counting
):
    ids = add_pending(runtime.memories, 2)
    headers, body = pubsub_event(ids)
    counting.failing = True
    response = client(source, "embed_memories").post("/", headers=headers, data=body)
    assert response.status_code == 500  # Pub/Sub will redeliver
    assert embedded(pool, ids) == 0
    counting.failing = False
    assert client(source, "embed_memories").post("/", headers=headers, data=body).status_code == 200
    assert embedded(pool, ids) == 2


def test_message_for_a_deleted_memory_is_acked(source, runtime, pool):
    user = unique_user()
    (memory_id,) = add_pending(runtime.memories, 1, user)
    runtime.memories.delete(user, memory_id)
    headers, body = pubsub_event([memory_id, "not-a-uuid"])
    assert client(source, "embed_memories").post("/", headers=headers, data=body).status_code == 200


@pytest.mark.parametrize("raw", [b"\xff\xfe not json", b'{"memory_ids": "abc"}'])
def test_undecodable_message_is_acked_not_retried_forever(source, raw):
    headers, body = pubsub_event(raw_data=raw)
    assert client(source, "embed_memories").post("/", headers=headers, data=body).status_code == 200


def test_message_without_ids_sweeps_everything_pending(source, runtime, pool):
    ids = add_pending(runtime.memories, 3)
    headers, body = pubsub_event(None)
    assert client(source, "embed_memories").post("/", headers=headers, data=body).status_code == 200
    assert embedded(pool, ids) == 3


# ---- HTTP functions and their OIDC gate ------------------------------------------------------


def bearer(issuer, **kwargs) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.token(**kwargs)}"}


@pytest.mark.parametrize("target", ["embed_memories_sweep", "apply_retention"])
def test_http_functions_require_the_scheduler_token(source, issuer, target):
    http = client(source, target)
    assert http.post("/").status_code == 401
    assert http.post("/", headers={"Authorization": "Bearer junk"}).status_code == 401
    intruder = bearer(issuer, email="intruder@proj.iam.gserviceaccount.com")
    assert http.post("/", headers=intruder).status_code == 403
    assert http.post("/", headers=bearer(issuer, audience="https://other")).status_code == 401


def test_sweep_embeds_everything_pending(source, runtime, pool, issuer):
    ids = add_pending(runtime.memories, 5)
    response = client(source, "embed_memories_sweep").post("/", headers=bearer(issuer))
    assert response.status_code == 200
    assert response.get_json()["pending"] == 0 and embedded(pool, ids) == 5


def test_sweep_reports_provider_failure(source, runtime, pool, issuer, counting):
    ids = add_pending(runtime.memories, 2)
    counting.failing = True
    response = client(source, "embed_memories_sweep").post("/", headers=bearer(issuer))
    assert response.status_code == 503
    assert response.get_json()["pending"] >= 2 and embedded(pool, ids) == 0


def test_apply_retention_runs_the_sweep(source, runtime, pool, issuer):
    from datetime import UTC, datetime, timedelta

    user = unique_user()
    gone = runtime.memories.upsert(
        user, "expired fact", expires_at=datetime.now(UTC) - timedelta(minutes=1)
    ).memory
    response = client(source, "apply_retention").post("/", headers=bearer(issuer))
    assert response.status_code == 200, response.data
    report = response.get_json()
    assert report["complete"] and report["counts"]["memories.retention:expired"] >= 1
    with pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM memories WHERE id = %s", [gone.id]) == 0


def test_process_runtime_is_built_once_under_concurrency():
    built: list[object] = []

    def build():
        time.sleep(0.05)
        built.append(object())
        return built[-1]

    lazy = ProcessRuntime(build)  # type: ignore[arg-type]
    results: list[object] = []
    workers = [threading.Thread(target=lambda: results.append(lazy())) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(built) == 1 and all(r is built[0] for r in results)


# ---- a real functions-framework process serving main.py -------------------------------------


def serve(target: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", target,
         "--source", str(ROOT / "main.py"), "--port", str(port), "--host", "127.0.0.1"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode()[-3000:])
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            time.sleep(0.2)
    return process, url


def test_main_py_serves_embed_memories_with_functions_framework(
    database_url, runtime, pool, tmp_path
):
    env = {
        "DATABASE_URL": database_url,
        "EMBED_IN_PROCESS": "false",
        "DATA_DIR": str(tmp_path),
        "TRIGGER_SERVICE_ACCOUNTS": SCHEDULER,
        "TRIGGER_AUDIENCE": AUDIENCE,
    }
    process, url = serve("embed_memories", env)
    try:
        ids = add_pending(runtime.memories, 2)
        headers, body = pubsub_event(ids)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
        assert embedded(pool, ids) == 2
    finally:
        process.terminate()
        process.wait(10)
