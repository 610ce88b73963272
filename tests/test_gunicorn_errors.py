"""What gunicorn answers itself, before the app sees a request, over raw sockets against a
real gunicorn started from gunicorn.conf.py, under each worker class: a malformed request
line, a 10,000-character header, an invalid header character. Each is the app's JSON
error shape, not gunicorn's HTML page. Plus what only a real server shows: a body past
MAX_BODY_BYTES gets a JSON 413 (chunked too), a malformed chunk a JSON 400, and a stream
never starts on invalid JSON."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from services.auth import ApiKeyStore
from tests.processes import Gunicorn

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def server(request, database_url, pool):
    gunicorn = Gunicorn(
        {
            "GUNICORN_WORKER": request.param,
            "DATABASE_URL": database_url,
            "EMBED_IN_PROCESS": "false",
            "LLM_PROVIDERS": "",
            "MAX_BODY_BYTES": "65536",
        }
    )
    yield gunicorn
    gunicorn.stop()


@pytest.fixture(scope="module")
def secret(pool) -> str:
    _, secret = ApiKeyStore(pool).create(f"user-{uuid.uuid4().hex[:8]}")
    return secret


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; the status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def json_error(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), body[:300]
    assert b"<html" not in body.lower()
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    return error


@pytest.mark.parametrize(
    ("raw", "status", "code", "field"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request", "request_line"),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request", "request_line"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
            "headers",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
            400,
            "bad_request",
            "headers",
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: a\r\n\r\n", 400, "bad_request", "headers"),
    ],
    ids=["request-line", "http-version", "10k-header", "header-char", "header-name"],
)
def test_errors_gunicorn_answers_itself_are_json(server, raw, status, code, field):
    got, headers, body = exchange(server.port, raw)
    assert got == status
    error = json_error(headers, body)
    assert (error["code"], error.get("field")) == (code, field)
    assert int(headers["content-length"]) == len(body)


def post_memory(port: int, secret: str, framing: bytes, body: bytes):
    return exchange(
        port,
        b"POST /v1/memories HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Content-Type: application/json\r\nAuthorization: Bearer {secret}\r\n".encode()
        + framing
        + b"\r\n"
        + body,
    )


def test_a_body_past_the_limit_is_a_json_413_with_or_without_content_length(server, secret):
    body = json.dumps({"content": "x" * 100_000}).encode()
    sized = post_memory(server.port, secret, f"Content-Length: {len(body)}\r\n".encode(), body)
    chunked = post_memory(
        server.port,
        secret,
        b"Transfer-Encoding: chunked\r\n",
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    for got, headers, reply in (sized, chunked):
        assert got == 413
        assert json_error(headers, reply)["code"] == "payload_too_large"


def test_a_malformed_chunk_the_app_reads_is_a_json_400(server, secret):
    got, headers, reply = post_memory(
        server.port, secret, b"Transfer-Encoding: chunked\r\n", b"zz\r\n"
    )
    assert got == 400
    error = json_error(headers, reply)
    assert (error["code"], error["field"]) == ("invalid_input", "body")


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/chat", b'{"message": "a\\ud800b", "stream": true}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "a\\udfff"}], '
                                 b'"stream": true}'),
        ("/v1/chat", b'{"message": "hi", "stream": true, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ],
    ids=["chat-surrogate", "completions-surrogate", "chat-deep"],
)  # fmt: skip
def test_a_stream_never_starts_on_bad_json(server, secret, path, payload):
    got, headers, reply = exchange(
        server.port,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + f"Content-Type: application/json\r\nAuthorization: Bearer {secret}\r\n".encode()
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload,
    )
    assert got == 400
    assert "text/event-stream" not in headers["content-type"]
    error = json_error(headers, reply)
    field = error.get("field", error.get("param"))  # completions answer in OpenAI's shape
    assert error["code"] == "invalid_input" and field in (
        "message",
        "messages.0.content",
        "x",
    )
