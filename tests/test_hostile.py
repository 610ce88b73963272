"""The adversarial suite, in-process (Flask test client) over real PostgreSQL and the real
SDKs against the wire-level LLM fake: schemathesis with positive and negative data from the
app's own /openapi.json, and hypothesis-generated hostile strings (lone surrogates, NUL,
bidirectional marks, megabyte strings, deep nesting) in every slot of every operation.

What holds for every request: no 5xx, and every error is the JSON error shape. Both are
derandomized, so a failure reproduces; ``bench.hostile`` sends the same kind of input to a
real gunicorn.
"""

from __future__ import annotations

import json
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.app import create_app
from services.auth import ApiKeyStore
from services.config import Settings
from tests.hostile_inputs import (
    HOSTILE_CHARS,
    HOSTILE_JSON,
    HOSTILE_STRINGS,
    Operation,
    Value,
    deep,
    encode,
    operations,
    takes_json,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def llm(llm_server):
    return llm_server


@pytest.fixture(scope="module")
def app(database_url, llm):
    settings_ = Settings(
        database_url=database_url,
        embed_in_process=False,
        llm_providers="anthropic",
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=llm.anthropic_base_url,
        # Embeddings through the OpenAI SDK against the fake: the local model spends
        # seconds of CPU on a long query, and hostile input is full of those.
        embedding_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=llm.openai_base_url,
        rate_limit_burst=1_000_000,
        rate_limit_per_minute=10_000_000,
    )
    app = create_app(settings_)
    yield app
    app.extensions["runtime"].close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def caller(app, client):
    """A user per operation with a memory and a thread, so ids in paths name real rows
    (and erasing or deleting them touches no other operation's)."""
    keys = ApiKeyStore(app.extensions["runtime"].pool)
    made: dict[str, tuple[str, dict[str, str]]] = {}

    def for_operation(operation: Operation) -> tuple[str, dict[str, str]]:
        if operation.label not in made:
            _, secret = keys.create(f"h-{uuid.uuid4().hex[:8]}")
            headers = {"Authorization": f"Bearer {secret}"}
            memory = client.post("/v1/memories", json={"content": "hostile seed"}, headers=headers)
            chat = client.post("/v1/chat", json={"message": "hello"}, headers=headers)
            ids = {"memory_id": memory.get_json()["id"], "thread_id": chat.get_json()["thread_id"]}
            made[operation.label] = (secret, ids)
        return made[operation.label]

    return for_operation


SETTINGS = settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def assert_no_5xx_and_json_errors(status: int, content_type: str, body: bytes, what: str) -> None:
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), f"{what}: {content_type} {body[:300]!r}"
        error = json.loads(body)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), what


# ---- the edge, route by route --------------------------------------------------------------

SURROGATE_CASES = [
    ("post", "/v1/memories", b'{"content": "a\\ud800b"}', "content"),
    ("post", "/v1/memories", b'{"content": "x", "key": "\\udfff"}', "key"),
    ("post", "/v1/memories", b'{"content": "x", "namespace": "\\ud800"}', "namespace"),
    ("post", "/v1/memories", b'{"content": "x", "metadata": {"k": "\\ud800"}}', "metadata.k"),
    ("patch", "/v1/memories/{memory_id}", b'{"content": "\\ud800"}', "content"),
    ("post", "/v1/chat", b'{"message": "a\\ud800b"}', "message"),
    ("post", "/v1/chat", b'{"message": "a\\ud800b", "stream": true}', "message"),
    (
        "post",
        "/v1/chat/completions",
        b'{"messages": [{"role": "user", "content": "\\ud800"}], "stream": true}',
        "messages.0.content",
    ),
    ("put", "/v1/me/retention", b'{"max_count": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "max_count"),
    ("post", "/v1/memories", b'{"content": "x", "metadata": ' + b"[" * 100_000 + b"]" * 100_000
     + b"}", "metadata"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "raw", "field"), SURROGATE_CASES)
def test_bad_json_is_refused_before_the_handler_naming_the_field(
    client, caller, llm, method, path, raw, field
):
    secret, ids = caller(Operation(method.upper(), path))
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    before = len(llm.requests)
    memories = client.get("/v1/memories", headers=headers).get_json()["items"]
    response = client.open(path.format(**ids), method=method.upper(), headers=headers, data=raw)
    assert response.status_code == 400
    assert response.content_type.startswith("application/json")  # never an event stream
    error = response.get_json()["error"]
    named = error.get("field", error.get("param"))  # completions answer in OpenAI's shape
    assert (error["code"], named) == ("invalid_input", field)
    assert len(llm.requests) == before  # no turn ran
    assert client.get("/v1/memories", headers=headers).get_json()["items"] == memories


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ('{"tag": "\\ud800"}', "filter.tag"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "filter.a"),
        ("{not json", "filter"),
        ("[1]", "filter"),
    ],
)
def test_a_bad_search_filter_is_refused_naming_it(client, caller, query, field):
    secret, _ = caller(Operation("GET", "/v1/memories/search"))
    response = client.get(
        "/v1/memories/search",
        query_string={"q": "tea", "filter": query},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


def test_a_valid_filter_and_body_still_work(client, caller):
    secret, _ = caller(Operation("GET", "/v1/memories/search"))
    headers = {"Authorization": f"Bearer {secret}"}
    made = client.post(
        "/v1/memories",
        json={"content": "drinks green tea \U0001f375", "metadata": {"tag": "drink"}},
        headers=headers,
    )
    assert made.status_code == 201
    found = client.get(
        "/v1/memories/search",
        query_string={"q": "tea", "filter": '{"tag": "drink"}', "mode": "lexical"},
        headers=headers,
    )
    assert [hit["memory"]["id"] for hit in found.get_json()["items"]] == [made.get_json()["id"]]


def test_a_body_over_the_limit_is_a_json_413(client, caller):
    secret, _ = caller(Operation("POST", "/v1/memories"))
    response = client.post(
        "/v1/memories",
        data=b'{"content": "' + b"x" * 1_100_000 + b'"}',
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


# ---- schemathesis ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    # The caller's key is sent with every case (without it every case is a 401), and
    # unknown query parameters are ignored, as HTTP APIs do, so neither is "negative data".
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
    return schema


# Negative data needs something to break: an operation without parameters or a body has none.
SCHEMATHESIS_CASES = [
    pytest.param(op, mode, id=f"{op.label}-{mode.value}")
    for op in operations()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or op.path_params or op.query or op.body
]


@pytest.mark.parametrize(("operation", "mode"), SCHEMATHESIS_CASES)
def test_schemathesis_finds_no_5xx_and_only_json_errors(operation, mode, api_schema, caller):
    secret, _ = caller(operation)
    headers = {"Authorization": f"Bearer {secret}"}
    api_operation = api_schema.find_operation_by_label(operation.label)

    @given(api_operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def check(case):
        response = case.call(headers=headers)
        assert_no_5xx_and_json_errors(
            response.status_code,
            response.headers.get("content-type", [""])[0],
            response.content,
            f"{case.method} {case.formatted_path} {mode}",
        )
        # Answers conform to the document and negative data is rejected. Not every rule of
        # the API fits in JSON Schema (opaque cursors, "expires_at in the future"): valid
        # input that breaks one gets a 400 naming the field, so positive_data_acceptance
        # is left out.
        # A body over MAX_BODY_BYTES is refused (413, JSON) before its schema is read;
        # schemathesis does not count 413 as a rejection of negative data.
        if response.status_code != 413:
            case.validate_response(
                response, headers=headers, excluded_checks=[positive_data_acceptance]
            )

    check()


# ---- hypothesis: hostile strings in every slot of every operation -------------------------------

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(st.sampled_from(HOSTILE_CHARS) | st.characters(codec=None), max_size=64),
    st.builds(lambda ch, n: ch * n, st.sampled_from(HOSTILE_CHARS), st.integers(1, 1_000_000)),
).map(Value)
hostile_json = st.one_of(
    st.sampled_from(HOSTILE_JSON),
    st.builds(deep, st.integers(1, 100_000), st.sampled_from(["[", "{"])),
).map(lambda text: Value(text, raw_json=True))


def hostile_request(operation: Operation):
    def value_for(slot: str):
        if takes_json(slot):
            return st.one_of(hostile_text, hostile_json)
        return hostile_text

    return st.sampled_from(operation.slots()).flatmap(
        lambda slot: st.tuples(st.just(slot), value_for(slot))
    )


@pytest.mark.parametrize("operation", operations(), ids=lambda op: op.label)
def test_hostile_strings_in_every_slot_get_no_5xx_and_json_errors(operation, client, caller):
    secret, ids = caller(operation)

    @given(hostile_request(operation))
    @SETTINGS
    def check(slot_value):
        slot, value = slot_value
        send_and_check(client, operation, slot, value, secret, ids)

    check()


# The values that broke the service before, in every slot of every operation: what random
# examples may miss, this does not.
WORST = (
    Value("a\ud800b"),
    Value("x" * 100_000 + "\x00"),
    Value(deep(100_000), raw_json=True),
    Value("NaN", raw_json=True),
)


@pytest.mark.parametrize("operation", operations(), ids=lambda op: op.label)
def test_the_worst_values_in_every_slot_get_no_5xx_and_json_errors(operation, client, caller):
    secret, ids = caller(operation)
    for slot in operation.slots():
        for value in WORST:
            if takes_json(slot) or not value.raw_json:
                send_and_check(client, operation, slot, value, secret, ids)


def send_and_check(client, operation: Operation, slot: str, value: Value, secret: str, ids):
    request = encode(operation, slot, value, secret=secret, ids=ids)
    response = client.open(
        request.target, method=request.method, headers=request.headers, data=request.body
    )
    assert_no_5xx_and_json_errors(
        response.status_code,
        response.headers.get("Content-Type", ""),
        response.get_data(),
        f"{operation.label} {slot}={value.text[:80]!r}",
    )
