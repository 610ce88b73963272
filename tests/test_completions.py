"""The OpenAI-compatible endpoint through a real gunicorn, driven by the official ``openai``
client: conversations stay in one thread, a client resending the whole conversation gets
it used without duplicated stored turns, unsupported parameters are refused in OpenAI's
error shape, a cut model stream ends in an error the client raises, and a client that
leaves mid-stream gets its turn finished on the server (on both chat endpoints)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
import uuid
from urllib.parse import urlparse

import openai
import pytest

from services.auth import ApiKeyStore
from services.config import Settings
from tests.fakes.llm_server import Reply, ToolUse
from tests.processes import Gunicorn

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def settings(database_url, llm_server) -> Settings:
    """Embeddings from the fake's OpenAI endpoint: no local model to load in the server."""
    return Settings(
        database_url=database_url,
        embed_in_process=False,
        embedding_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=llm_server.openai_base_url,
    )


@pytest.fixture(scope="module")
def server(database_url, pool, llm_server, settings):
    gunicorn = Gunicorn(
        {
            "DATABASE_URL": database_url,
            "EMBED_IN_PROCESS": "false",
            "EMBEDDING_PROVIDER": "openai",
            "OPENAI_API_KEY": settings.openai_api_key,
            "OPENAI_BASE_URL": settings.openai_base_url,
            "LLM_PROVIDERS": "anthropic",
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": llm_server.anthropic_base_url,
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_BURST": "100000",
            "REDIS_URL": "",
        }
    )
    yield gunicorn.url
    gunicorn.stop()


@pytest.fixture
def secret(pool) -> str:
    _, secret = ApiKeyStore(pool).create(f"user-{uuid.uuid4().hex[:8]}")
    return secret


@pytest.fixture
def client(server, secret) -> openai.OpenAI:
    # Closed after each test: an idle keep-alive connection would hold up gunicorn's exit.
    with openai.OpenAI(base_url=f"{server}/v1", api_key=secret, max_retries=2) as client:
        yield client


def get_json(url: str, secret: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def stored(server: str, secret: str, thread_id: str) -> list[tuple[str, str]]:
    thread = get_json(f"{server}/v1/threads/{thread_id}", secret)
    return [(m["role"], m["content"]) for m in thread["messages"]]


def model_saw(request) -> list[tuple[str, str]]:
    """The conversation in one Anthropic request the fake received, as (role, text)."""
    return [
        (m["role"], "".join(b.get("text", "") for b in m["content"] if isinstance(b, dict)))
        if isinstance(m["content"], list)
        else (m["role"], m["content"])
        for m in request.body["messages"]
    ]


def system_of(request) -> str:
    return json.dumps(request.body["system"])


# ---- threads ------------------------------------------------------------------------------


def test_a_five_turn_conversation_stays_in_one_thread(server, secret, client, fake):
    thread_id = None
    for turn in range(1, 6):
        fake.script("anthropic", Reply(text=f"answer {turn}"))
        headers = {"X-Thread-Id": thread_id} if thread_id else {}
        if turn % 2:
            raw = client.chat.completions.with_raw_response.create(
                model="memory-agent",
                messages=[{"role": "user", "content": f"question {turn}"}],
                extra_headers=headers,
            )
            completion = raw.parse()
            assert completion.choices[0].message.content == f"answer {turn}"
            assert raw.headers["X-Thread-Id"] == completion.thread_id
            returned = completion.thread_id
        else:  # streaming; the thread id is in every chunk and the header
            with client.chat.completions.with_streaming_response.create(
                model="memory-agent",
                messages=[{"role": "user", "content": f"question {turn}"}],
                stream=True,
                extra_headers=headers,
            ) as response:
                chunks = list(response.parse())
                header = response.headers["X-Thread-Id"]
            assert {chunk.thread_id for chunk in chunks} == {header}
            assert chunks[-1].choices[0].finish_reason == "stop"
            returned = header
        assert thread_id in (None, returned)
        thread_id = returned

    threads = get_json(f"{server}/v1/threads", secret)["items"]
    assert [t["thread_id"] for t in threads] == [thread_id]
    assert stored(server, secret, thread_id) == [
        (role, f"{kind} {n}")
        for n in range(1, 6)
        for role, kind in (("user", "question"), ("assistant", "answer"))
    ]
    # The fifth turn's prompt held the four before it, from the stored thread.
    assert model_saw(fake.requests_for("anthropic")[-1])[:2] == [
        ("user", "question 1"),
        ("assistant", "answer 1"),
    ]


def test_metadata_thread_id_continues_a_thread_and_a_foreign_one_is_not_found(
    server, secret, client, pool, fake
):
    first = client.chat.completions.create(
        model="memory-agent", messages=[{"role": "user", "content": "hello"}]
    )
    again = client.chat.completions.create(
        model="memory-agent",
        messages=[{"role": "user", "content": "hello again"}],
        metadata={"thread_id": first.thread_id},
    )
    assert again.thread_id == first.thread_id
    assert len(stored(server, secret, first.thread_id)) == 4

    _, other = ApiKeyStore(pool).create(f"user-{uuid.uuid4().hex[:8]}")
    with (
        openai.OpenAI(base_url=f"{server}/v1", api_key=other, max_retries=0) as intruder,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        intruder.chat.completions.create(
            model="memory-agent",
            messages=[{"role": "user", "content": "let me in"}],
            extra_headers={"X-Thread-Id": first.thread_id},
        )
    assert caught.value.body["code"] == "not_found"
    assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="memory-agent",
            messages=[{"role": "user", "content": "which one?"}],
            metadata={"thread_id": first.thread_id},
            extra_headers={"X-Thread-Id": "another-thread"},
        )
    assert caught.value.body["param"] == "metadata"
    assert len(stored(server, secret, first.thread_id)) == 4


# ---- the conversation the client sends ----------------------------------------------------


def test_a_client_resending_the_whole_conversation_stores_each_turn_once(
    server, secret, client, fake
):
    """Open WebUI / LibreChat style: system message and full history on every call."""
    system = {"role": "system", "content": "Answer like a pirate."}
    history: list[dict] = []
    thread_id = None
    for turn in range(1, 4):
        fake.script("anthropic", Reply(text=f"Arr, answer {turn}"))
        history.append({"role": "user", "content": f"question {turn}"})
        completion = client.chat.completions.create(
            model="gpt-4o",  # accepted, ignored: the deployment's models answer
            messages=[system, *history],
            metadata={"thread_id": thread_id} if thread_id else None,
        )
        assert completion.model == "memory-agent"
        thread_id = completion.thread_id
        history.append({"role": "assistant", "content": completion.choices[0].message.content})

    assert stored(server, secret, thread_id) == [(m["role"], m["content"]) for m in history]
    last = fake.requests_for("anthropic")[-1]
    assert model_saw(last) == [(m["role"], m["content"]) for m in history[:-1]]
    assert "Answer like a pirate." in system_of(last)
    assert "<client_instructions>" in system_of(last)


def test_a_diverging_history_is_used_for_the_prompt_and_only_the_new_turn_is_stored(
    server, secret, client, fake
):
    fake.script("anthropic", Reply(text="Paris."), Reply(text="About 2 million."))
    first = client.chat.completions.create(
        model="memory-agent", messages=[{"role": "user", "content": "Capital of France?"}]
    )
    # The user edited their first question in the client and asks a follow-up.
    edited = [
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "How many people live there?"},
    ]
    client.chat.completions.create(
        model="memory-agent", messages=edited, extra_headers={"X-Thread-Id": first.thread_id}
    )
    assert model_saw(fake.requests_for("anthropic")[-1]) == [
        (m["role"], m["content"]) for m in edited
    ]
    assert stored(server, secret, first.thread_id) == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "How many people live there?"),
        ("assistant", "About 2 million."),
    ]


def test_a_new_conversation_with_history_uses_it_and_stores_only_the_new_turn(
    server, secret, client, fake
):
    fake.script("anthropic", Reply(text="Blue, you said."))
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "My favourite colour is blue."},
        {"role": "assistant", "content": [{"type": "text", "text": "Nice."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}]},
    ]
    completion = client.chat.completions.create(model="memory-agent", messages=messages)
    request = fake.requests_for("anthropic")[-1]
    assert model_saw(request) == [
        ("user", "My favourite colour is blue."),
        ("assistant", "Nice."),
        ("user", "What is it?"),
    ]
    assert "Be brief." in system_of(request)
    assert stored(server, secret, completion.thread_id) == [
        ("user", "What is it?"),
        ("assistant", "Blue, you said."),
    ]


# ---- what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ],
)
def test_unsupported_parameters_are_refused_in_openais_shape(client, fake, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="memory-agent", messages=[{"role": "user", "content": "hi"}], **extra
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error" and body["param"] == param
    assert body["message"]
    assert fake.requests_for("anthropic") == []  # refused before any model call


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [
            {"role": "user", "content": "hi"},
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "prefill"}],
        [{"role": "system", "content": "x" * 8001}, {"role": "user", "content": "hi"}],
    ],
)
def test_messages_the_agent_cannot_use_are_refused(client, fake, messages):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="memory-agent", messages=messages)
    assert caught.value.body["param"].startswith("messages")
    assert fake.requests_for("anthropic") == []


def test_a_bad_key_is_an_authentication_error_in_openais_shape(server):
    with (
        openai.OpenAI(base_url=f"{server}/v1", api_key="mak_nope", max_retries=0) as intruder,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        intruder.models.list()
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["code"] == "unauthorized"


# ---- a model stream that breaks -----------------------------------------------------------


def test_a_cut_stream_ends_with_an_error_the_client_raises(server, secret, client, fake):
    # message_start, content_block_start, ping, then two text deltas: then the cut.
    fake.script("anthropic", Reply(text="one two three four five", cut_after_events=5))
    stream = client.chat.completions.create(
        model="memory-agent", messages=[{"role": "user", "content": "count"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert caught.value.body["code"] == "llm_stream_interrupted"
    assert "cut off" in caught.value.message
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "one two "
    assert all(c.choices[0].finish_reason is None for c in received)  # never a "stop"
    thread_id = received[0].thread_id
    assert stored(server, secret, thread_id) == [("user", "count"), ("assistant", "one two ")]


def test_a_cut_stream_final_chunk_says_length_to_clients_that_ignore_errors(server, secret, fake):
    fake.script("anthropic", Reply(text="one two three four five", cut_after_events=5))
    chunks = raw_completion_stream(server, secret, "count")
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["error"]["code"] == "llm_stream_interrupted"
    assert last["error"]["type"] == "server_error"


def test_a_cut_answer_without_streaming_is_a_502_the_client_does_not_retry(
    server, secret, client, fake
):
    fake.script("anthropic", Reply(text="one two three four five", cut_after_events=5))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="memory-agent", messages=[{"role": "user", "content": "count"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "llm_stream_interrupted"
    assert caught.value.response.headers["x-should-retry"] == "false"
    # max_retries=2, yet one turn: it is stored, a blind retry would store it twice.
    assert len(fake.requests_for("anthropic")) == 1
    thread_id = caught.value.response.headers["X-Thread-Id"]
    assert stored(server, secret, thread_id) == [("user", "count"), ("assistant", "one two ")]


def raw_completion_stream(server: str, secret: str, message: str) -> list[dict]:
    target = urlparse(server)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps({"messages": [{"role": "user", "content": message}], "stream": True}),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200
    chunks = []
    while line := response.readline():
        text = line.decode().strip()
        if text.startswith("data: ") and text != "data: [DONE]":
            chunks.append(json.loads(text[len("data: ") :]))
    connection.close()
    return chunks


# ---- a client that leaves -----------------------------------------------------------------


LEAVING = [
    ("/v1/chat", {"message": "talk slowly", "stream": True}),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "talk slowly"}], "stream": True},
    ),
]


def leave_mid_stream(server: str, secret: str, path: str, payload: dict, marker: bytes) -> None:
    """Start a streamed turn and hang up once ``marker`` has arrived."""
    target = urlparse(server)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    connection.request(
        "POST",
        path,
        body=json.dumps(payload),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200
    while marker not in response.readline():  # the answer has started
        pass
    connection.sock.close()  # the client goes away with the answer half-streamed
    connection.close()


@pytest.mark.parametrize(("path", "payload"), LEAVING)
def test_a_client_leaving_mid_stream_still_gets_its_turn_finished(
    server, secret, fake, path, payload
):
    words = " ".join(f"word{n}" for n in range(10))
    fake.script("anthropic", Reply(text=words, chunk_delay_s=0.1))
    leave_mid_stream(server, secret, path, payload, b"word0")

    deadline = time.monotonic() + 15
    threads: list = []
    while time.monotonic() < deadline:
        threads = get_json(f"{server}/v1/threads", secret)["items"]
        if threads and threads[0]["message_count"] == 2:
            messages = stored(server, secret, threads[0]["thread_id"])
            if messages[-1][1] == words:
                break
        time.sleep(0.2)
    assert stored(server, secret, threads[0]["thread_id"]) == [
        ("user", "talk slowly"),
        ("assistant", words),
    ]


@pytest.mark.parametrize(("path", "payload"), LEAVING)
def test_a_client_leaving_before_the_memory_write_still_gets_the_memory_written(
    server, secret, fake, path, payload
):
    """The model writes its memory after the words the client saw: the turn goes on."""
    words = " ".join(f"slow{n}" for n in range(8))
    fact = f"Speaks slowly on purpose ({path})"
    fake.script(
        "anthropic",
        Reply(
            text=words,
            tool_calls=[ToolUse("upsert_memory", {"content": fact, "context": "style"})],
            chunk_delay_s=0.1,
        ),
        Reply(text="Noted."),
    )
    leave_mid_stream(server, secret, path, payload, b"slow0")

    deadline = time.monotonic() + 15
    contents: list[str] = []
    while time.monotonic() < deadline:
        contents = [m["content"] for m in get_json(f"{server}/v1/memories", secret)["items"]]
        threads = get_json(f"{server}/v1/threads", secret)["items"]
        last = stored(server, secret, threads[0]["thread_id"])[-1] if threads else None
        if fact in contents and last == ("assistant", "Noted."):
            break
        time.sleep(0.2)
    assert fact in contents
    said = stored(server, secret, threads[0]["thread_id"])
    assert said[0] == ("user", "talk slowly")
    assert "".join(text for role, text in said if role == "assistant") == words + "Noted."


def test_a_client_that_never_sends_the_thread_id_back_stays_in_one_thread(
    server, secret, client, fake
):
    """Open WebUI does not read X-Thread-Id: its resent conversation finds the thread."""
    history: list[dict] = []
    thread_ids = set()
    for turn in range(1, 5):
        fake.script("anthropic", Reply(text=f"answer {turn}"))
        history.append({"role": "user", "content": f"question {turn}"})
        completion = client.chat.completions.create(model="memory-agent", messages=history)
        thread_ids.add(completion.thread_id)
        history.append({"role": "assistant", "content": completion.choices[0].message.content})
    [thread_id] = thread_ids
    assert stored(server, secret, thread_id) == [(m["role"], m["content"]) for m in history]

    # A different conversation that merely shares the last exchange is not that thread.
    fake.script("anthropic", Reply(text="something else"))
    other = client.chat.completions.create(
        model="memory-agent",
        messages=[*history[-2:], {"role": "user", "content": "and now?"}],
    )
    assert other.thread_id != thread_id
    assert len(get_json(f"{server}/v1/threads", secret)["items"]) == 2
