"""Faults: the real PostgreSQL and Redis processes killed or frozen mid-traffic against a
real gunicorn. Failed calls must be 503 with Retry-After (never a 500), the service must
recover at once when the database is back, no acknowledged write may be lost, erasure must
finish by itself once Redis is back, and the embedded PostgreSQL must be restarted by the
application that started it.

The session's shared PostgreSQL is never touched: these tests start their own embedded
instances, each in its own data directory.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from services.app import create_app
from services.auth import ApiKeyStore, Authenticator
from services.config import Settings
from services.db import open_pool
from services.embedded import EmbeddedPostgres, postmaster_pid
from services.embeddings import embedding_spec
from services.migrate import migrate
from tests.processes import Gunicorn, make_database_url, unique_user
from tests.traffic import (
    Traffic,
    call,
    failed,
    first_success_after,
    lost_writes,
    share_503_with_retry_after,
)

OFFLINE = {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "", "EMBED_IN_PROCESS": "false"}
LIMITS = {"RATE_LIMIT_PER_MINUTE": "100000", "RATE_LIMIT_BURST": "100000"}


@pytest.fixture(scope="module")
def fault_pg():
    """An embedded PostgreSQL of our own, to kill (the test process supervises it by hand:
    no watchdog, so an outage lasts exactly as long as the test wants)."""
    root = Path(tempfile.mkdtemp(prefix="ma-fault-pg-"))
    server = EmbeddedPostgres(root / "pg")
    yield server
    server.close()


@pytest.fixture(scope="module")
def fault_url(fault_pg) -> str:
    return make_database_url(fault_pg.socket(), "faults")


@pytest.fixture(scope="module")
def secrets(fault_url) -> list[str]:
    settings = Settings(database_url=fault_url, embed_in_process=False)
    pool = open_pool(settings)
    try:
        migrate(pool, *embedding_spec(settings), settings.hnsw_index)
        return [ApiKeyStore(pool).create(unique_user("fault"))[1] for _ in range(4)]
    finally:
        pool.close()


@pytest.fixture(scope="module")
def server(fault_url, secrets, redis_server):
    if redis_server.process is None:
        redis_server.start()
    gunicorn = Gunicorn(
        {"DATABASE_URL": fault_url, "REDIS_URL": redis_server.url, **OFFLINE, **LIMITS}
    )
    yield gunicorn
    gunicorn.stop()


def kill_postgres(pg: EmbeddedPostgres) -> None:
    pid = postmaster_pid(pg.pgdata)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pg.alive():
        assert time.monotonic() < deadline, "the postmaster outlived SIGKILL"
        time.sleep(0.02)


def test_a_database_outage_is_503_with_retry_after_and_loses_no_acknowledged_write(
    server, fault_pg, secrets
):
    traffic = Traffic(server.url, secrets)
    traffic.start()
    try:
        time.sleep(2.0)
        kill_postgres(fault_pg)
        killed = time.monotonic()
        time.sleep(3.0)
        assert fault_pg.ensure_running()
        back = time.monotonic()
        time.sleep(2.5)
    finally:
        traffic.stop()

    during = [c for c in traffic.calls if c.started >= killed + 0.5 and c.ended <= back]
    assert during and not any(c.ok for c in during), [c for c in during if c.ok][:5]
    bad = failed(traffic.calls)
    assert bad, "the outage was not noticed"
    assert share_503_with_retry_after(traffic.calls) == 1.0, sorted(
        {(c.op, c.status, c.code) for c in bad}
    )
    assert {c.code for c in bad} == {"database_unavailable"}
    assert {c.op for c in during} >= {"write", "chat", "chat_stream", "export"}
    recovery = first_success_after(traffic.calls, back)
    assert recovery is not None and recovery <= 2.0
    after = [c for c in traffic.calls if c.started >= back + 0.5]
    assert after and all(c.ok for c in after), "stale connections failed after the restart"
    assert {"memory", "chat"} <= {ack.kind for ack in traffic.acks}
    assert lost_writes(server.url, traffic.acks) == []


def test_a_stream_never_starts_while_the_database_is_down(fault_pg, fault_url, pool):
    """With the credential checked elsewhere (an ID token needs no database), the turn's
    own first read meets the dead database: a JSON 503, not a 200 event stream."""
    user = unique_user()
    key, secret = ApiKeyStore(pool).create(user)  # on the session's database, which lives
    app = create_app(
        Settings(database_url=fault_url, embed_in_process=False, anthropic_api_key=""),
        authenticator=Authenticator(ApiKeyStore(pool)),
    )
    runtime = app.extensions["runtime"]
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {secret}"}
        kill_postgres(fault_pg)
        try:
            for payload in (
                {"message": "hello", "stream": True},
                {"message": "hello", "stream": False},
            ):
                response = client.post("/v1/chat", json=payload, headers=headers)
                assert response.status_code == 503, payload
                assert response.mimetype == "application/json"
                assert response.headers["Retry-After"] == "1"
                assert response.get_json()["error"]["code"] == "database_unavailable"
            completion = client.post(
                "/v1/chat/completions",
                json={
                    "model": "memory-agent",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers=headers,
            )
            assert completion.status_code == 503 and completion.mimetype == "application/json"
        finally:
            assert fault_pg.ensure_running()
        response = client.post("/v1/chat", json={"message": "hello"}, headers=headers)
        assert response.status_code == 200  # the very next request after the restart
    finally:
        runtime.close()


def test_erasure_with_redis_unreachable_finishes_by_itself_once_it_is_back(
    server, secrets, redis_server, redis_client
):
    secret = secrets[0]
    text = f"my locker code is {unique_user('code')}"
    reply = call(server.url, secret, "POST", "/v1/chat", {"message": text})
    thread_id = reply.json()["thread_id"]
    call(server.url, secret, "GET", f"/v1/threads/{thread_id}")  # the hot copy is filled
    other = call(server.url, secrets[1], "POST", "/v1/chat", {"message": text}).json()
    assert _bytes_in_redis(redis_client, text.encode()) > 0

    os.kill(redis_server.process.pid, signal.SIGSTOP)  # unreachable, but keeps its data
    try:
        erased = call(server.url, secret, "DELETE", "/v1/me")
        gone = call(server.url, secrets[1], "DELETE", f"/v1/threads/{other['thread_id']}")
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert erased.status == 202, erased.body
    state = erased.json()
    assert state["pending"] == ["redis"] and state["complete"] == ["archive", "database"]
    assert erased.headers["location"] == f"/v1/me/erasure/{state['request_id']}"
    assert gone.status == 202 and gone.json()["pending"] == ["redis"]
    assert call(server.url, secret, "GET", f"/v1/threads/{thread_id}").status == 404

    deadline = time.monotonic() + 20  # no client retry: the service's own loop finishes
    while True:
        now = call(server.url, secret, "GET", erased.headers["location"]).json()
        if now["status"] == "done" and _bytes_in_redis(redis_client, text.encode()) == 0:
            break
        assert time.monotonic() < deadline, (now, _bytes_in_redis(redis_client, text.encode()))
        time.sleep(0.5)
    assert now["pending"] == [] and now["erased"] is True and now["counts"]["redis_keys"] >= 1
    assert call(server.url, secrets[1], "GET", erased.headers["location"]).status == 404


def test_the_embedded_postgresql_is_restarted_by_the_app_and_stopped_at_its_exit(tmp_path):
    gunicorn = Gunicorn(
        {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": "", **OFFLINE, **LIMITS},
        wait=False,
    )
    try:
        gunicorn.wait_until_serving(timeout=120)
        pgdata = tmp_path / "pg"
        first = postmaster_pid(pgdata)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        while call(gunicorn.url, "", "GET", "/readyz").status != 200:
            assert time.monotonic() - killed < 5.0, gunicorn.output()[-3000:]
            time.sleep(0.1)
        assert postmaster_pid(pgdata) not in (None, first)
        assert "embedded PostgreSQL restarted" in gunicorn.output()
    finally:
        gunicorn.stop()
    assert postmaster_pid(tmp_path / "pg") is None  # it started this one: stopped with it


def test_a_server_the_app_joined_is_left_running(pg_server, pg_socket, database_url):
    joined = EmbeddedPostgres(Path(pg_server.pgdata))
    assert joined.socket() == pg_socket
    joined.close()
    assert postmaster_pid(Path(pg_server.pgdata)) is not None  # not ours to stop


def _bytes_in_redis(client, needle: bytes) -> int:
    """How many bytes of ``needle`` occur in any key or value in Redis."""
    total = 0
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values = [key]
        if kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"string":
            values.append(client.get(key) or b"")
        elif kind == b"hash":
            values += list(client.hgetall(key).values())
        total += sum(value.count(needle) * len(needle) for value in values)
    return total
