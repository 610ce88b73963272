"""The HTTP API in-process (Flask test client) over real PostgreSQL, the real agent and the
real anthropic SDK talking to the wire-level fake."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from services.app import create_app
from services.auth import ApiKeyStore
from services.config import Settings
from services.embedding_worker import drain
from tests.fakes.id_tokens import TokenIssuer
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolUse

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PROJECT = "demo-project"
JSON = "application/json"


@pytest.fixture(scope="module")
def llm():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def issuer():
    local = TokenIssuer()
    yield local
    local.close()


@pytest.fixture(scope="module")
def app(database_url, llm, issuer):
    settings = Settings(
        database_url=database_url,
        embed_in_process=False,
        llm_providers="anthropic",
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=llm.anthropic_base_url,
        firebase_project_id=PROJECT,
        firebase_certs_url=issuer.url,
        max_body_bytes=64 * 1024,
        rate_limit_burst=1000,
        rate_limit_per_minute=100_000,
    )
    app = create_app(settings)
    yield app
    app.extensions["runtime"].close()


@pytest.fixture
def client(app, llm):
    llm.reset()
    return app.test_client()


@pytest.fixture(scope="module")
def keys(app) -> ApiKeyStore:
    return ApiKeyStore(app.extensions["runtime"].pool)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def new_user(keys: ApiKeyStore, prefix: str = "user", **options) -> tuple[str, dict[str, str]]:
    user = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _, secret = keys.create(user, **options)
    return user, bearer(secret)


def firebase_token(issuer: TokenIssuer, uid: str, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{PROJECT}",
        "aud": PROJECT,
        "sub": uid,
        "auth_time": now - 60,
        "iat": now - 60,
        "exp": now + 3600,
        **overrides,
    }
    return issuer.mint(claims)


def error_of(response) -> dict:
    assert response.is_json, response.get_data(as_text=True)
    return response.get_json()["error"]


# ---- auth ---------------------------------------------------------------------------------


def test_everything_but_health_requires_a_credential(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    for method, path in [
        ("get", "/v1/memories"),
        ("post", "/v1/chat"),
        ("get", "/v1/me/export"),
        ("delete", "/v1/me"),
        ("get", "/metrics"),
        ("get", "/v1/models"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert error_of(response)["code"] == "unauthorized"


def test_revoked_and_unknown_keys_get_401(client, keys):
    user = f"user-{uuid.uuid4().hex[:8]}"
    key, secret = keys.create(user)
    assert client.get("/v1/memories", headers=bearer(secret)).status_code == 200
    keys.revoke(key.id)
    assert client.get("/v1/memories", headers=bearer(secret)).status_code == 401
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert client.get("/v1/memories", headers=bearer(forged)).status_code == 401
    assert client.get("/v1/memories", headers={"Authorization": "Basic abc"}).status_code == 401


def test_firebase_tokens_are_verified(client, issuer):
    uid = f"uid{uuid.uuid4().hex[:8]}"
    good = bearer(firebase_token(issuer, uid))
    created = client.post("/v1/memories", headers=good, json={"content": "token user fact"})
    assert created.status_code == 201
    exported = client.get("/v1/me/export", headers=good).get_json()
    assert exported["user_id"] == f"firebase:{uid}"

    now = int(time.time())
    bad_tokens = {
        "expired": firebase_token(issuer, uid, exp=now - 3600, iat=now - 7200),
        "wrong audience": firebase_token(issuer, uid, aud="other-project"),
        "wrong issuer": firebase_token(issuer, uid, iss="https://securetoken.google.com/x"),
        "forged": issuer.mint(
            {"iss": f"https://securetoken.google.com/{PROJECT}", "aud": PROJECT, "sub": uid,
             "iat": now, "exp": now + 3600},
            issuer.impostor,
        ),
    }  # fmt: skip
    for why, token in bad_tokens.items():
        response = client.get("/v1/memories", headers=bearer(token))
        assert response.status_code == 401, why


def test_a_service_key_acts_only_for_its_own_users(client, keys):
    service, service_headers = new_user(keys, "acme", service=True)
    as_bob = {**service_headers, "X-Act-As-User": "bob"}
    client.post("/v1/memories", headers=as_bob, json={"content": "bob's fact"})
    assert client.get("/v1/me/export", headers=as_bob).get_json()["user_id"] == f"{service}:bob"
    assert client.get("/v1/memories", headers=service_headers).get_json()["items"] == []
    _, plain = new_user(keys)
    refused = client.get("/v1/memories", headers={**plain, "X-Act-As-User": "bob"})
    assert refused.status_code == 403


# ---- isolation ----------------------------------------------------------------------------


def test_user_b_can_never_touch_user_a(client, keys):
    _, alice = new_user(keys, "alice")
    _, bob = new_user(keys, "bob")
    memory = client.post(
        "/v1/memories", headers=alice, json={"content": "Alice's passport number is X123"}
    ).get_json()
    path = f"/v1/memories/{memory['id']}"
    assert client.get(path, headers=bob).status_code == 404
    assert client.patch(path, headers=bob, json={"content": "hijacked"}).status_code == 404
    assert client.delete(path, headers=bob).status_code == 404
    assert client.get(f"{path}/history", headers=bob).status_code == 404
    found = client.get("/v1/memories/search?q=passport%20X123", headers=bob).get_json()
    assert found["items"] == []
    assert client.get("/v1/memories", headers=bob).get_json()["items"] == []
    assert "X123" not in client.get("/v1/me/export", headers=bob).get_data(as_text=True)
    assert client.delete("/v1/me", headers=bob).status_code == 200
    assert client.get(path, headers=alice).get_json()["content"] == memory["content"]


# ---- memories -----------------------------------------------------------------------------


def test_memory_crud_with_versions_and_history(client, keys):
    _, headers = new_user(keys)
    created = client.post(
        "/v1/memories",
        headers=headers,
        json={"content": "Lives in Lyon", "key": "city", "observed_at": "2026-01-02T03:04:05Z"},
    )
    assert created.status_code == 201
    memory = created.get_json()
    assert memory["observed_at"].startswith("2026-01-02T03:04:05")
    path = f"/v1/memories/{memory['id']}"
    updated = client.patch(path, headers=headers, json={"content": "Lives in Nice", "version": 1})
    assert updated.status_code == 200 and updated.get_json()["version"] == 2
    stale = client.patch(path, headers=headers, json={"content": "Lives in Paris", "version": 1})
    assert stale.status_code == 409 and error_of(stale)["field"] == "version"
    history = client.get(f"{path}/history", headers=headers).get_json()["items"]
    assert [e["op"] for e in history] == ["ADD", "UPDATE"]
    assert history[0]["superseded_at"] is None and history[1]["old_content"] == "Lives in Lyon"
    assert client.delete(path, headers=headers).status_code == 204
    assert client.get(path, headers=headers).status_code == 404


def test_list_pages_and_search_filters(client, keys):
    _, headers = new_user(keys)
    for n in range(5):
        client.post(
            "/v1/memories",
            headers=headers,
            json={"content": f"note {n} about gardening", "metadata": {"n": n % 2}},
        )
    first = client.get("/v1/memories?limit=3", headers=headers).get_json()
    rest = client.get(
        f"/v1/memories?limit=3&cursor={first['next_cursor']}", headers=headers
    ).get_json()
    assert len(first["items"]) == 3 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    filtered = client.get(
        '/v1/memories/search?q=gardening&mode=lexical&filter={"n":1}', headers=headers
    ).get_json()
    assert len(filtered["items"]) == 2
    assert all(hit["memory"]["metadata"] == {"n": 1} for hit in filtered["items"])


def test_search_serves_the_pipeline_with_readable_scores_and_a_cut_off(client, keys, app):
    _, headers = new_user(keys)
    for content, kind in [
        ("The user's dog is a beagle called Biscuit", "fact"),
        ("The user works night shifts at the hospital", "fact"),
        ("I took Biscuit to the vet on Tuesday", "episode"),
    ]:
        made = client.post("/v1/memories", headers=headers, json={"content": content, "kind": kind})
        assert made.status_code == 201 and made.get_json()["kind"] == kind
    runtime = app.extensions["runtime"]
    drain(runtime.pool, runtime.embedder, batch_size=64, duplicate_threshold=0.95)
    search = "/v1/memories/search?q=Biscuit%20the%20beagle"
    hits = client.get(search, headers=headers).get_json()["items"]
    assert hits[0]["memory"]["content"].startswith("The user's dog")
    assert all(0 <= h["score"] <= 1 for h in hits) and hits[0]["score"] > 0.5
    cut = client.get(f"{search}&min_score=0.9", headers=headers).get_json()["items"]
    assert 1 <= len(cut) < len(hits) and all(h["score"] >= 0.9 for h in cut)
    facts = client.get(f"{search}&kind=fact", headers=headers).get_json()["items"]
    assert {h["memory"]["kind"] for h in facts} == {"fact"}
    raw = client.get(f"{search}&mode=lexical", headers=headers).get_json()["items"]
    assert raw and all(0 <= h["score"] <= 1 and h["vector_rank"] is None for h in raw)
    listed = client.get("/v1/memories", headers=headers).get_json()["items"]
    assert {m["kind"] for m in listed} == {"fact"}  # the list shows facts unless asked
    every = client.get("/v1/memories?kind=all", headers=headers).get_json()["items"]
    assert len(every) == 3
    for bad in ("min_score=2", "min_score=nan", "kind=note", "mode=fuzzy"):
        response = client.get(f"{search}&{bad}", headers=headers)
        assert response.status_code == 400 and error_of(response)["field"] == bad.split("=")[0]


def test_a_merged_id_says_where_it_went(client, keys, app):
    _, headers = new_user(keys)
    first = client.post("/v1/memories", headers=headers, json={"content": "I have two cats"})
    second = client.post("/v1/memories", headers=headers, json={"content": "i have two cats!"})
    assert first.status_code == second.status_code == 201  # both acknowledged
    runtime = app.extensions["runtime"]
    drain(runtime.pool, runtime.embedder, batch_size=64, duplicate_threshold=0.95)
    survivor_id = first.get_json()["id"]
    read = client.get(f"/v1/memories/{second.get_json()['id']}", headers=headers).get_json()
    assert read["id"] == read["merged_into"] == survivor_id
    assert read["metadata"]["merged"][0]["content"] == "i have two cats!"
    own = client.get(f"/v1/memories/{survivor_id}", headers=headers).get_json()
    assert "merged_into" not in own


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, kwargs, status, field",
    [
        ("post", "/v1/memories", {"data": "{not json", "content_type": JSON}, 400, "body"),
        ("post", "/v1/memories", {"data": "content=x"}, 400, "body"),
        ("post", "/v1/memories", {"json": []}, 400, "body"),
        ("post", "/v1/memories", {"json": {"content": 7}}, 400, "content"),
        ("post", "/v1/memories", {"json": {"content": "x", "colour": "red"}}, 400, "colour"),
        ("post", "/v1/memories", {"json": {}}, 400, "content"),
        ("post", "/v1/memories", {"json": {"content": "x", "importance": 3}}, 400, "importance"),
        ("post", "/v1/memories", {"json": {"content": "x", "expires_at": "x"}}, 400, "expires_at"),
        ("get", "/v1/memories?limit=0", {}, 400, "limit"),
        ("get", "/v1/memories?limit=abc", {}, 400, "limit"),
        ("get", "/v1/memories/search", {}, 400, "q"),
        ("get", "/v1/memories/search?q=x&filter=[1]", {}, 400, "filter"),
        ("get", "/v1/threads/bad%20id", {}, 400, "thread_id"),
        ("post", "/v1/chat", {"json": {"message": ""}}, 400, "message"),
        ("post", "/v1/chat", {"json": {"message": "hi", "stream": "yes"}}, 400, "stream"),
    ],
)  # fmt: skip
def test_bad_requests_get_json_errors_naming_the_field(
    client, keys, method, path, kwargs, status, field
):
    _, headers = new_user(keys)
    response = getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status_code == status
    assert error_of(response)["field"] == field
    assert client.get("/v1/memories", headers=headers).get_json()["items"] == []


def test_unknown_routes_methods_and_big_bodies_are_json(client, keys):
    _, headers = new_user(keys)
    missing = client.get("/v1/nothing-here", headers=headers)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = client.put("/v1/memories", headers=headers, json={})
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]
    assert error_of(wrong)["code"] == "method_not_allowed"
    big = client.post("/v1/memories", headers=headers, json={"content": "x" * 100_000})
    assert big.status_code == 413 and error_of(big)["code"] == "payload_too_large"


# ---- rate limits --------------------------------------------------------------------------


def test_a_burst_over_the_limit_gets_429_and_changes_nothing(client, keys):
    _, headers = new_user(keys, rate_limit_per_minute=3)
    statuses = [
        client.post("/v1/memories", headers=headers, json={"content": f"fact {n}"}).status_code
        for n in range(5)
    ]
    assert statuses == [201, 201, 201, 429, 429]
    limited = client.post("/v1/memories", headers=headers, json={"content": "one more"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert error_of(limited)["code"] == "rate_limited"
    _, other = new_user(keys)  # limits are per caller
    assert client.get("/v1/memories", headers=other).status_code == 200


# ---- chat ---------------------------------------------------------------------------------


def test_chat_writes_memories_for_the_caller_and_reports_usage(client, keys, llm):
    user, headers = new_user(keys)
    llm.script(
        "anthropic",
        Reply(
            text="",
            tool_calls=[
                ToolUse("upsert_memory", {"content": "Has a cat named Miso", "context": "pets"})
            ],
            input_tokens=120,
            output_tokens=30,
        ),
        Reply(text="Noted, Miso is lovely.", input_tokens=150, output_tokens=10),
    )
    response = client.post("/v1/chat", headers=headers, json={"message": "My cat is Miso"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["text"] == "Noted, Miso is lovely."
    [event] = body["memory_events"]
    assert event["action"] == "written" and event["content"] == "Has a cat named Miso"
    stored = client.get(f"/v1/memories/{event['memory_id']}", headers=headers)
    assert stored.get_json()["content"] == "Has a cat named Miso"
    assert body["final"]["usage"]["input_tokens"] == 270
    usage = client.get("/v1/usage", headers=headers).get_json()
    assert sum(item["input_tokens"] for item in usage["items"]) == 270
    assert sum(item["output_tokens"] for item in usage["items"]) == 40
    assert usage["total_cost_usd"] > 0
    thread = client.get(f"/v1/threads/{body['thread_id']}", headers=headers).get_json()
    assert [m["role"] for m in thread["messages"]][0] == "user"


def test_idempotency_key_returns_the_first_result(client, keys, llm):
    _, headers = new_user(keys)
    llm.script("anthropic", Reply(text="first answer"), Reply(text="second answer"))
    retry = {**headers, "Idempotency-Key": "turn-1"}
    first = client.post("/v1/chat", headers=retry, json={"message": "hello"}).get_json()
    again = client.post("/v1/chat", headers=retry, json={"message": "hello"}).get_json()
    assert first["text"] == again["text"] == "first answer"
    assert first["thread_id"] == again["thread_id"]
    assert len(llm.requests_for("anthropic")) == 1
    replayed = client.post("/v1/chat", headers=retry, json={"message": "hello", "stream": True})
    assert "first answer" in replayed.get_data(as_text=True)
    other = client.post("/v1/chat", headers=retry, json={"message": "something else"})
    assert other.status_code == 409 and error_of(other)["code"] == "idempotency_conflict"


def test_chat_in_someone_elses_thread_is_not_found(client, keys, llm):
    _, alice = new_user(keys, "alice")
    _, bob = new_user(keys, "bob")
    llm.script("anthropic", Reply(text="hi alice"))
    thread_id = client.post("/v1/chat", headers=alice, json={"message": "hi"}).get_json()[
        "thread_id"
    ]
    response = client.post("/v1/chat", headers=bob, json={"message": "x", "thread_id": thread_id})
    assert response.status_code == 404
    assert client.get(f"/v1/threads/{thread_id}", headers=bob).status_code == 404
    assert client.delete(f"/v1/threads/{thread_id}", headers=bob).status_code == 404
    assert len(llm.requests_for("anthropic")) == 1


# ---- privacy ------------------------------------------------------------------------------


def test_export_then_erase_everything_idempotently(client, keys, llm, app):
    user, headers = new_user(keys)
    llm.script("anthropic", Reply(text="hello there"))
    client.post("/v1/chat", headers=headers, json={"message": "remember me"})
    memory = client.post("/v1/memories", headers=headers, json={"content": "a secret fact"})
    client.patch(
        f"/v1/memories/{memory.get_json()['id']}",
        headers=headers,
        json={"content": "a changed fact"},
    )
    export = client.get("/v1/me/export", headers=headers).get_json()
    tables = export["tables"]
    facts = [m["content"] for m in tables["memories"] if m["kind"] == "fact"]
    episodes = {m["content"] for m in tables["memories"] if m["kind"] == "episode"}
    assert facts == ["a changed fact"]
    assert episodes == {"remember me", "hello there"}  # the chat turn, as episodes
    assert {e["op"] for e in tables["memory_events"]} == {"ADD", "UPDATE"}
    assert len(tables["threads"]) == 1 and len(tables["messages"]) == 2
    assert tables["usage"], "usage rows are part of the export"
    assert "secret_hash" not in str(export)

    first = client.delete("/v1/me", headers=headers)
    second = client.delete("/v1/me", headers=headers)
    assert first.status_code == second.status_code == 200
    after = client.get("/v1/me/export", headers=headers).get_json()["tables"]
    assert all(rows == [] for rows in after.values()), after
    with app.extensions["runtime"].pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM memory_events WHERE user_id = %s", [user]) == 0
        recorded = tx.value("SELECT count(*) FROM deletion_requests WHERE status = 'done'")
    assert recorded >= 1


def test_retention_policy_can_be_overridden_and_reset(client, keys):
    _, headers = new_user(keys)
    default = client.get("/v1/me/retention", headers=headers).get_json()
    changed = client.put("/v1/me/retention", headers=headers, json={"max_count": 50})
    assert changed.get_json()["max_count"] == 50
    reset = client.put("/v1/me/retention", headers=headers, json={"max_count": None})
    assert reset.get_json() == default
    bad = client.put("/v1/me/retention", headers=headers, json={"max_count": -1})
    assert bad.status_code == 400 and error_of(bad)["field"] == "max_count"


# ---- operations ---------------------------------------------------------------------------


def test_metrics_are_for_service_keys(client, keys, llm):
    _, plain = new_user(keys)
    _, service = new_user(keys, "ops", service=True)
    client.get("/v1/memories", headers=plain)
    llm.script("anthropic", Reply(text="counted", input_tokens=77, output_tokens=5))
    client.post("/v1/chat", headers=plain, json={"message": "count me"})
    assert client.get("/metrics", headers=plain).status_code == 403
    text = client.get("/metrics", headers=service).get_data(as_text=True)
    assert 'http_requests_total{method="GET",route="/v1/memories",status="200"}' in text
    assert 'llm_tokens_total{kind="input",model="claude-sonnet-4-5-20250929"}' in text
    assert 'chat_turn_phase_seconds_count{phase="retrieval"}' in text


def test_openapi_describes_every_route(app):
    spec = app.test_client().get("/openapi.json").get_json()
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == documented
