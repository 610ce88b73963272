"""The two Google Cloud clients at the wire: services/archive.py's GcsArchive through the
real google-cloud-storage client against a local JSON API server, and
services/publisher.py's PubSubPublisher through the real google-cloud-pubsub client against a
local gRPC Publisher service. The clients are pointed at the fakes the way the libraries
support emulators (``STORAGE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``); nothing of ours is
mocked. Assertions are on what the clients sent and on what our code does when the service
answers 503 / UNAVAILABLE or refuses."""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import time
import urllib.request
import uuid

import grpc
import pytest
from google.api_core.exceptions import RetryError

from services.archive import GcsArchive, make_archive, user_prefix
from services.config import Settings
from services.memories.store import MemoryStore
from services.publisher import MAX_IDS_PER_MESSAGE, PubSubPublisher, make_publisher
from services.retention import (
    RetentionJob,
    RetentionPolicy,
    list_archived,
    restore_archived,
    run_retention,
    set_policy,
)
from services.threads import ThreadStore
from tests.fakes.gcs_server import FakeGcsServer
from tests.fakes.pubsub_server import FakePubSubServer
from tests.processes import Gunicorn, unique_user

BUCKET = "memory-agent-archive-test"
TOPIC = "projects/test-project/topics/memory-written"


# ---- Cloud Storage ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_server():
    with FakeGcsServer(page_size=2) as server:
        yield server


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    gcs_server.reset()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    yield gcs_server
    gcs_server.reset()


def multipart_parts(request) -> tuple[dict, bytes, str]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    meta, media = list(message.iter_parts())
    return (
        json.loads(meta.get_payload(decode=True)),
        media.get_payload(decode=True),
        (media.get_content_type()),
    )


def uploads(gcs) -> list:
    return [r for r in gcs.requests if r.method == "POST" and r.path.startswith("/upload/")]


def test_archive_objects_round_trip_through_the_json_api(gcs):
    archive = make_archive(Settings(archive_bucket=BUCKET))  # the production construction
    assert isinstance(archive, GcsArchive) and archive.description == f"gs://{BUCKET}"
    alice, bob = user_prefix("alice"), user_prefix("bob")
    records = [
        {"id": "1", "content": "Likes genmaicha", "embedding": "[0.1,0.2]"},
        {"id": "2", "content": "住在东京", "metadata": {"src": "chat"}},
    ]
    archive.write(f"{alice}20261125T000000Z-a.jsonl", records)

    (upload,) = uploads(gcs)
    assert upload.path == f"/upload/storage/v1/b/{BUCKET}/o"
    assert upload.query["uploadType"] == "multipart"
    metadata, body, content_type = multipart_parts(upload)
    assert metadata["name"] == f"{alice}20261125T000000Z-a.jsonl"
    assert content_type == "application/x-ndjson"
    lines = body.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records  # JSONL, one record a line
    assert body.endswith(b"\n") and "住在东京" in lines[1]  # UTF-8, not \u escapes
    assert gcs.objects(BUCKET)[metadata["name"]] == body

    assert archive.read(f"{alice}20261125T000000Z-a.jsonl") == records
    download = gcs.requests[-1]
    assert download.method == "GET" and download.query.get("alt") == "media"
    assert archive.read(f"{alice}missing.jsonl") == []  # 404 is "nothing archived"

    for i in range(4):
        archive.write(f"{alice}20261126T00000{i}Z-b.jsonl", [{"id": f"x{i}"}])
    archive.write(f"{bob}20261126T000000Z-c.jsonl", [{"id": "bob"}])
    before = len(gcs.requests)
    listed = archive.list(alice)
    assert len(listed) == 5 and all(name.startswith(alice) for name in listed)
    assert listed == sorted(listed)
    pages = [r for r in gcs.requests[before:] if r.method == "GET"]
    assert len(pages) == 3  # 2 per page: the client followed nextPageToken
    assert all(page.query["prefix"] == alice for page in pages)
    assert [page.query.get("pageToken") for page in pages] == [None, "2", "4"]

    archive.delete(listed[0])
    archive.delete(listed[0])  # already gone: 404 is not an error
    assert listed[0] not in archive.list(alice)
    deletes = [r for r in gcs.requests if r.method == "DELETE"]
    assert len(deletes) == 2 and deletes[0].path.endswith(listed[0].replace("/", "%2F"))


def test_a_503_is_retried_and_the_object_written_once(gcs):
    archive = GcsArchive(BUCKET, retry_seconds=10)
    gcs.fail_next(2, 503, method="POST")
    archive.write(f"{user_prefix('carol')}x.jsonl", [{"id": "1"}])
    assert len(uploads(gcs)) == 3 and list(gcs.objects(BUCKET)) == [
        f"{user_prefix('carol')}x.jsonl"
    ]

    gcs.fail_next(1, 503, method="GET")
    assert archive.read(f"{user_prefix('carol')}x.jsonl") == [{"id": "1"}]


def test_a_lasting_503_raises_after_the_bounded_retry(gcs):
    archive = GcsArchive(BUCKET, retry_seconds=2.0)
    gcs.fail_next(1000, 503, method="POST")
    started = time.monotonic()
    with pytest.raises(RetryError):
        archive.write(f"{user_prefix('dave')}x.jsonl", [{"id": "1"}])
    assert time.monotonic() - started < 8  # not the library's 120 s default
    assert len(uploads(gcs)) >= 2 and gcs.objects(BUCKET) == {}

    gcs.heal()
    gcs.fail_next(1000, 503, method="GET")
    with pytest.raises(RetryError):  # a read that fails is not "nothing archived"
        archive.read(f"{user_prefix('dave')}x.jsonl")


INERT = RetentionPolicy(
    max_age_days=0, max_count=0, importance_floor=1.01, archive_after_days=0, thread_idle_days=0
)


def test_retention_archives_to_the_bucket_and_an_outage_loses_nothing(gcs, pool, store, embedder):
    archive = GcsArchive(BUCKET, retry_seconds=0.5)
    job = RetentionJob(pool, archive, ThreadStore(pool), INERT, embedder.model, pause_ratio=0)
    user = unique_user()
    set_policy(pool, INERT, user, {"archive_after_days": 10})
    cold = store.upsert(user, "Had a golden retriever called Max", key="pet").memory
    warm = store.upsert(user, "Works as a nurse").memory
    with pool.transaction() as tx:
        tx.execute(
            "UPDATE memories SET updated_at = now() - interval '20 days' WHERE id = %s",
            [cold.id],
        )

    gcs.fail_next(1000, 503, method="POST")
    with pytest.raises(RetryError):
        run_retention(job, budget_seconds=30)
    assert store.get(user, cold.id).content == cold.content  # still in the hot table
    assert list_archived(pool, user) == [] and gcs.objects(BUCKET) == {}

    gcs.heal()
    report = run_retention(job, budget_seconds=30)
    assert report.counts["memories.retention:archive"] == 1
    (name,) = gcs.objects(BUCKET)
    assert name.startswith(user_prefix(user)) and name.endswith(".jsonl")
    (record,) = [json.loads(line) for line in gcs.objects(BUCKET)[name].splitlines()]
    assert record["id"] == cold.id and record["user_id"] == user
    assert [a.memory_id for a in list_archived(pool, user)] == [cold.id]
    assert store.count(user) == 1 and store.get(user, warm.id)

    gcs.fail_next(1000, 503, method="GET")
    with pytest.raises(RetryError):  # the bucket is down: the restore changes nothing
        restore_archived(pool, archive, user, embedder.model)
    assert [a.memory_id for a in list_archived(pool, user)] == [cold.id]
    gcs.heal()
    restored = restore_archived(pool, archive, user, embedder.model)
    assert restored.restored == [cold.id]
    assert store.get(user, cold.id).key == "pet" and gcs.objects(BUCKET) == {}  # tidied


# ---- Pub/Sub ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pubsub_server():
    with FakePubSubServer([TOPIC]) as server:
        yield server


@pytest.fixture
def pubsub(pubsub_server, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_server.host)
    pubsub_server.fail_always(None)
    pubsub_server._requests.clear()
    pubsub_server._failures.clear()
    yield pubsub_server
    pubsub_server.fail_always(None)


@pytest.fixture
def publishers():
    made: list[PubSubPublisher] = []
    yield made
    for publisher in made:
        publisher.close()


def ids_in(message) -> list[str]:
    return json.loads(message.data)["memory_ids"]


def test_the_service_publishes_through_grpc_under_each_gunicorn_worker(pubsub, database_url, pool):
    """The real service under gunicorn: a memory written over HTTP reaches Pub/Sub. Under
    the gevent worker the client's batching threads are greenlets and gRPC runs in a
    monkey-patched process (with gRPC's gevent support switched on, as gRPC documents;
    this publish also went through without it)."""
    from services.auth import ApiKeyStore

    for worker in ("gevent", "gthread"):
        pubsub._requests.clear()
        server = Gunicorn(
            {
                "GUNICORN_WORKER": worker,
                "DATABASE_URL": database_url,
                "EMBED_IN_PROCESS": "false",
                "LLM_PROVIDERS": "",
                "PUBSUB_TOPIC": TOPIC,
                "PUBSUB_EMULATOR_HOST": pubsub.host,
            }
        )
        try:
            _, secret = ApiKeyStore(pool).create(unique_user())
            request = urllib.request.Request(
                f"{server.url}/v1/memories",
                data=json.dumps({"content": f"Plays the cello ({worker})"}).encode(),
                headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                written = json.loads(response.read())
            messages = pubsub.wait_for(1, timeout=20)
            assert [ids_in(m) for m in messages] == [[written["id"]]], (worker, server.output())
        finally:
            server.stop()


def test_changed_memory_ids_are_published_as_the_function_expects(
    pubsub, publishers, pool, embedder
):
    publisher = make_publisher(Settings(pubsub_topic=TOPIC))
    publishers.append(publisher)
    store = MemoryStore(pool, embedder, on_change=publisher.publish)  # as the runtime announces
    written = store.upsert(unique_user(), "Plays the cello").memory

    (message,) = pubsub.wait_for(1)
    (call,) = pubsub.requests
    assert call.topic == TOPIC
    assert json.loads(message.data) == {"memory_ids": [written.id]}
    assert message.attributes == {"kind": "memory-written", "count": "1"}
    assert message.ordering_key == "" and message.message_id

    publisher.publish(["b", "a", "b", "c", "a"])  # duplicates dropped, order kept
    second = pubsub.wait_for(2)[1]
    assert ids_in(second) == ["b", "a", "c"] and second.attributes["count"] == "3"


def test_many_ids_are_split_into_bounded_messages_and_batched(pubsub, publishers):
    publisher = PubSubPublisher(TOPIC)
    publishers.append(publisher)
    ids = [str(uuid.uuid4()) for _ in range(2 * MAX_IDS_PER_MESSAGE + 200)]
    publisher.publish(ids)

    messages = pubsub.wait_for(3)
    assert len(messages) == 3
    sizes = sorted(len(ids_in(m)) for m in messages)
    assert sizes == [200, MAX_IDS_PER_MESSAGE, MAX_IDS_PER_MESSAGE]
    assert [m.attributes["count"] for m in messages] == [str(len(ids_in(m))) for m in messages]
    in_order = sorted(messages, key=lambda m: ids.index(ids_in(m)[0]))
    assert [i for m in in_order for i in ids_in(m)] == ids  # nothing lost, nothing repeated
    assert all(len(m.data) < 10 * 1024 * 1024 for m in messages)  # under Pub/Sub's 10 MB
    assert 1 <= len(pubsub.requests) <= 3  # the client batches; typically one Publish call


def test_an_unavailable_publish_is_retried_by_the_client_and_delivered_once(pubsub, publishers):
    publisher = PubSubPublisher(TOPIC)
    publishers.append(publisher)
    pubsub.fail_next(2, grpc.StatusCode.UNAVAILABLE)
    publisher.publish(["m1"])

    (message,) = pubsub.wait_for(1)
    assert ids_in(message) == ["m1"]
    assert [c.status for c in pubsub.requests] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]


def test_publishing_never_blocks_or_raises_into_the_write_path(pubsub, publishers, caplog):
    publisher = PubSubPublisher(TOPIC)
    publishers.append(publisher)
    publisher.publish(["warm-up"])  # the client is built on the first publish
    pubsub.wait_for(1)

    pubsub.fail_always(grpc.StatusCode.UNAVAILABLE, "down")
    started = time.perf_counter()
    publisher.publish(["during-outage"])
    assert time.perf_counter() - started < 0.05  # the caller does not wait for Pub/Sub
    calls = pubsub.wait_for_calls(3)
    assert [c.status for c in calls[1:3]] == ["UNAVAILABLE", "UNAVAILABLE"]  # still retrying
    pubsub.fail_always(None)
    delivered = pubsub.wait_for(2)
    assert ids_in(delivered[-1]) == ["during-outage"]  # a short outage loses nothing

    with caplog.at_level(logging.WARNING, logger="services.publisher"):
        pubsub.fail_always(grpc.StatusCode.PERMISSION_DENIED, "no publisher role")
        publisher.publish(["refused"])  # not retryable: logged, not raised
        deadline = time.monotonic() + 10
        while "publishing changed memory ids failed" not in caplog.text:
            assert time.monotonic() < deadline, "the failure was not logged"
            time.sleep(0.02)
    assert "no publisher role" in caplog.text
    assert ids_in(pubsub.requests[-1].messages[0]) == ["refused"]
    assert len(pubsub.delivered()) == 2


def test_an_unknown_topic_is_refused_by_the_service_and_only_logged(pubsub, publishers, caplog):
    publisher = PubSubPublisher("projects/test-project/topics/deleted")
    publishers.append(publisher)
    with caplog.at_level(logging.WARNING, logger="services.publisher"):
        publisher.publish(["x"])
        (call,) = pubsub.wait_for_calls(1)
        deadline = time.monotonic() + 10
        while "publishing changed memory ids failed" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert call.status == "NOT_FOUND" and not pubsub.delivered()
    with pytest.raises(ValueError):
        PubSubPublisher("memory-written")  # a bare name is a configuration error
