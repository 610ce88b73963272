"""Wire-level fake of the Anthropic Messages API and the OpenAI Chat Completions and
Embeddings APIs, for pointing the real SDKs at in tests and benchmarks.

Endpoints: ``POST /v1/messages`` (Anthropic, JSON or SSE), ``POST /v1/chat/completions``
(OpenAI, JSON or ``data:`` chunks ending in ``data: [DONE]``) and ``POST /v1/embeddings``
(deterministic hashed bag-of-words vectors, float or base64).

Tests script what the "model" says per request with :meth:`FakeLLMServer.script` (a FIFO
queue per provider of :class:`Reply` or :class:`Failure`), can make a provider fail on every
request (:meth:`FakeLLMServer.fail_always`) or retire a model (404 ``not_found_error``), and
assert on :attr:`FakeLLMServer.requests`, which records what the SDK actually sent. With
nothing scripted every request gets :attr:`FakeLLMServer.default_reply`.

Standalone, for load tests::

    python -m tests.fakes.llm_server --port 8089 --latency-ms 300
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Provider = Literal["anthropic", "openai"]
PROVIDERS: tuple[str, ...] = ("anthropic", "openai")

EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_EMBEDDING_DIMENSIONS = 1536

_WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class ToolUse:
    """A tool call the fake model makes. ``arguments`` given as a string is sent verbatim
    (use it to script malformed JSON)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))


@dataclass(frozen=True)
class Reply:
    """One scripted successful answer.

    Token counts default to a rough word count of the request/answer. ``chunks`` overrides
    how the text is split into stream deltas (default: one delta per word).
    ``cut_after_events`` closes the connection abruptly after that many SSE events
    (streaming only). ``delay_s`` holds back the first byte; ``chunk_delay_s`` paces the
    stream.
    """

    text: str = "Hello from the fake model."
    tool_calls: Sequence[ToolUse] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    stop_reason: str | None = None
    chunks: Sequence[str] | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    cut_after_events: int | None = None
    model: str | None = None

    def text_chunks(self) -> list[str]:
        if self.chunks is not None:
            return [c for c in self.chunks]
        if not self.text:
            return []
        return re.findall(r"\S+\s*|\s+", self.text)


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


@dataclass(frozen=True)
class Failure:
    """One scripted error response (status code, provider-shaped JSON error body)."""

    status: int = 500
    message: str = "scripted failure"
    error_type: str | None = None
    retry_after: float | None = None
    delay_s: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Failure:
        return cls(429, "Number of requests has exceeded your rate limit", retry_after=retry_after)

    @classmethod
    def server_error(cls) -> Failure:
        return cls(500, "Internal server error")

    @classmethod
    def overloaded(cls) -> Failure:
        return cls(529, "Overloaded", error_type="overloaded_error")

    @classmethod
    def model_not_found(cls, model: str = "") -> Failure:
        return cls(404, f"model: {model}" if model else "model not found")

    @classmethod
    def unauthorized(cls) -> Failure:
        return cls(401, "invalid x-api-key")


Script = Reply | Failure


@dataclass(frozen=True)
class RecordedRequest:
    provider: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream")) if isinstance(self.body, dict) else False

    def tool_results(self) -> list[Any]:
        """The tool results the SDK sent back, parsed, in either provider's format."""
        out = []
        for message in self.body["messages"]:
            if self.provider == "openai":
                if message["role"] == "tool":
                    out.append(json.loads(message["content"]))
            elif isinstance(message["content"], list):
                out += [
                    json.loads(b["content"])
                    for b in message["content"]
                    if b["type"] == "tool_result"
                ]
        return out


def _provider_for(path: str) -> str | None:
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/v1/messages"):
        return "anthropic"
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/embeddings"):
        return "embeddings"
    return None


def _words(value: Any) -> int:
    """A crude token count: words in every string inside ``value``."""
    if isinstance(value, str):
        return len(_WORD_RE.findall(value))
    if isinstance(value, Mapping):
        return sum(_words(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_words(v) for v in value)
    return 0


def embed_text(text: str, dimensions: int) -> list[float]:
    """Deterministic unit vector: hashed bag of words (signed feature hashing)."""
    vec = [0.0] * dimensions
    for word in _WORD_RE.findall(text.lower()):
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        h = int.from_bytes(digest, "little")
        vec[h % dimensions] += 1.0 if (h >> 63) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


class _CutConnection(Exception):
    """Raised inside the handler to drop the connection mid-stream."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing ---------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("", "/healthz"):
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"type": "not_found_error", "message": "no route"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode("utf-8", "replace")
        provider = _provider_for(self.path)
        fake._record(
            RecordedRequest(
                provider=provider or "unknown",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                received_at=time.monotonic(),
            )
        )
        if provider is None or not isinstance(body, dict):
            self._send_json(404, {"error": {"type": "not_found_error", "message": "no route"}})
            return
        try:
            if provider == "embeddings":
                self._embeddings(body)
            else:
                self._chat(provider, body)
        except (_CutConnection, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _emit(self, frames: Iterator[bytes], reply: Reply) -> None:
        self._start_stream()
        for n, frame in enumerate(frames):
            if reply.cut_after_events is not None and n >= reply.cut_after_events:
                raise _CutConnection()
            if n > 0 and reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            self._write_chunk(frame)
        self._end_stream()

    # -- chat -------------------------------------------------------------------------

    def _chat(self, provider: str, body: dict[str, Any]) -> None:
        fake = self.server.fake
        item = fake._next(provider, str(body.get("model", "")))
        delay = item.delay_s + fake.latency_s
        if delay > 0:
            time.sleep(delay)
        if isinstance(item, Failure):
            self._failure(provider, item)
            return
        reply = item
        model = reply.model or str(body.get("model", "fake-model"))
        input_tokens = (
            reply.input_tokens
            if reply.input_tokens is not None
            else max(1, _words(body.get("messages")) + _words(body.get("system")))
        )
        if provider == "anthropic" and fake.prompt_caching and reply.input_tokens is None:
            input_tokens += _words(body.get("tools"))  # tools are prompt too
            reply, input_tokens = fake._cache(reply, model, body, input_tokens)
        output_tokens = (
            reply.output_tokens
            if reply.output_tokens is not None
            else max(1, _words(reply.text) + 10 * len(reply.tool_calls))
        )
        if provider == "anthropic":
            if body.get("stream"):
                self._emit(_anthropic_events(reply, model, input_tokens, output_tokens), reply)
            else:
                self._send_json(200, _anthropic_message(reply, model, input_tokens, output_tokens))
        else:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if body.get("stream"):
                frames = _openai_chunks(reply, model, input_tokens, output_tokens, include_usage)
                self._emit(frames, reply)
            else:
                self._send_json(200, _openai_completion(reply, model, input_tokens, output_tokens))

    def _failure(self, provider: str, failure: Failure) -> None:
        headers: dict[str, str] = {}
        if failure.retry_after is not None:
            headers["retry-after"] = f"{failure.retry_after:g}"
        if provider == "anthropic":
            error_type = failure.error_type or _ANTHROPIC_ERROR_TYPES.get(
                failure.status, "api_error"
            )
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": error_type, "message": failure.message},
                "request_id": "req_" + uuid.uuid4().hex[:24],
            }
        else:
            default_type, code = _OPENAI_ERROR_TYPES.get(failure.status, ("server_error", None))
            payload = {
                "error": {
                    "message": failure.message,
                    "type": failure.error_type or default_type,
                    "param": None,
                    "code": code,
                }
            }
        self._send_json(failure.status, payload, headers)

    # -- embeddings -------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        item = fake._next("embeddings", str(body.get("model", "")))
        delay = item.delay_s + fake.embedding_latency_s
        if delay > 0:
            time.sleep(delay)
        if isinstance(item, Failure):
            self._failure("openai", item)
            return
        model = str(body.get("model", "text-embedding-3-small"))
        dims = int(
            body.get("dimensions") or EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
        )
        inputs = body.get("input", "")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        data = []
        tokens = 0
        for i, text in enumerate(inputs):
            if not isinstance(text, str):  # token arrays: embed their textual form
                text = " ".join(str(t) for t in text)
            tokens += max(1, _words(text))
            vector = embed_text(text, dims)
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{dims}f", *vector)
                encoded: Any = base64.b64encode(packed).decode("ascii")
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


# -- response bodies ------------------------------------------------------------------


def _tool_id(prefix: str, call: ToolUse, i: int) -> str:
    return call.id or f"{prefix}{uuid.uuid4().hex[:20]}{i}"


def _anthropic_usage(reply: Reply, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
    }


def _anthropic_stop(reply: Reply) -> str:
    return reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")


def _anthropic_message(
    reply: Reply, model: str, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for i, call in enumerate(reply.tool_calls):
        args = call.arguments if isinstance(call.arguments, Mapping) else {}
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id("toolu_", call, i),
                "name": call.name,
                "input": dict(args),
            }
        )
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _anthropic_stop(reply),
        "stop_sequence": None,
        "usage": _anthropic_usage(reply, input_tokens, output_tokens),
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _anthropic_events(
    reply: Reply, model: str, input_tokens: int, output_tokens: int
) -> Iterator[bytes]:
    usage = _anthropic_usage(reply, input_tokens, 1)
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_" + uuid.uuid4().hex[:24],
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
        },
    )
    index = 0
    chunks = reply.text_chunks()
    if chunks:
        yield _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield _sse("ping", {"type": "ping"})
        for piece in chunks:
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    for i, call in enumerate(reply.tool_calls):
        yield _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {
                    "type": "tool_use",
                    "id": _tool_id("toolu_", call, i),
                    "name": call.name,
                    "input": {},
                },
            },
        )
        args = call.arguments_json()
        pieces = [""] + [args[j : j + 12] for j in range(0, len(args), 12)]
        for piece in pieces:
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                },
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _anthropic_stop(reply), "stop_sequence": None},
            "usage": _anthropic_usage(reply, input_tokens, output_tokens),
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


def _openai_finish(reply: Reply) -> str:
    if reply.stop_reason:
        return reply.stop_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _openai_usage(reply: Reply, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    # OpenAI's prompt_tokens include the cached ones.
    prompt = input_tokens + reply.cache_read_tokens + reply.cache_write_tokens
    details: dict[str, Any] = {"cached_tokens": reply.cache_read_tokens, "audio_tokens": 0}
    if reply.cache_write_tokens:
        details["cache_write_tokens"] = reply.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output_tokens,
        "total_tokens": prompt + output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_completion(
    reply: Reply, model: str, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text or None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_id("call_", call, i),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _openai_finish(reply),
            }
        ],
        "usage": _openai_usage(reply, input_tokens, output_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def _openai_chunks(
    reply: Reply, model: str, input_tokens: int, output_tokens: int, include_usage: bool
) -> Iterator[bytes]:
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in reply.text_chunks():
        yield chunk({"content": piece})
    for i, call in enumerate(reply.tool_calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": i,
                        "id": _tool_id("call_", call, i),
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        args = call.arguments_json()
        for j in range(0, len(args), 12):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j : j + 12]}}]})
    yield chunk({}, _openai_finish(reply))
    if include_usage:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": _openai_usage(reply, input_tokens, output_tokens),
        }
        yield f"data: {json.dumps(data)}\n\n".encode()
    yield b"data: [DONE]\n\n"


# -- the server -----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is part of what the fake simulates.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeLLMServer:
    """The fake, as a context manager (or call :meth:`start`/:meth:`stop`).

    ``latency_s`` delays every chat response's first byte (benchmarks);
    ``embedding_latency_s`` does the same for embeddings.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_s: float = 0.0,
        embedding_latency_s: float = 0.0,
        default_reply: Reply | None = None,
        prompt_caching: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.latency_s = latency_s
        self.embedding_latency_s = embedding_latency_s
        self.default_reply = default_reply or Reply()
        # Model Anthropic's prompt cache (benchmarks): the tools and system blocks up to the
        # last cache_control breakpoint are written to the cache the first time a prefix is
        # seen and read from it after that; the rest of the prompt is ordinary input.
        self.prompt_caching = prompt_caching
        self._cached_prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Script]] = {p: deque() for p in (*PROVIDERS, "embeddings")}
        self._always: dict[str, Failure] = {}
        self._retired: set[str] = set()
        self._requests: list[RecordedRequest] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeLLMServer:
        httpd = _Server((self.host, self.port), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-llm"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # addresses
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.Anthropic(base_url=...)`` (the SDK appends ``/v1/messages``)."""
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        """For ``openai.OpenAI(base_url=...)`` (the SDK appends ``/chat/completions``)."""
        return self.base_url + "/v1"

    # scripting
    def script(self, provider: str, *items: Script) -> None:
        """Queue replies/failures for ``provider`` ("anthropic", "openai" or "embeddings");
        each request takes the next one."""
        if provider not in self._queues:
            raise ValueError(f"unknown provider {provider!r}")
        with self._lock:
            self._queues[provider].extend(items)

    def fail_always(self, provider: str, failure: Failure | None = Failure(503, "down")) -> None:
        """Make every request to ``provider`` fail (``None`` clears it)."""
        with self._lock:
            if failure is None:
                self._always.pop(provider, None)
            else:
                self._always[provider] = failure

    def retire_model(self, model: str) -> None:
        """Every request naming ``model`` gets 404 ``not_found_error`` from now on."""
        with self._lock:
            self._retired.add(model)

    def pending(self, provider: str) -> int:
        with self._lock:
            return len(self._queues[provider])

    def reset(self) -> None:
        with self._lock:
            for q in self._queues.values():
                q.clear()
            self._always.clear()
            self._retired.clear()
            self._requests.clear()

    # recording
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.provider == provider]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _cache(
        self, reply: Reply, model: str, body: dict[str, Any], input_tokens: int
    ) -> tuple[Reply, int]:
        blocks = [*(body.get("tools") or []), *(body.get("system") or [])]
        marked = [i for i, block in enumerate(blocks) if isinstance(block, dict)
                  and block.get("cache_control")]  # fmt: skip
        if not marked or isinstance(body.get("system"), str):
            return reply, input_tokens
        prefix = blocks[: marked[-1] + 1]
        tokens = _words(prefix)
        key = hashlib.sha256(json.dumps([model, prefix], sort_keys=True).encode()).hexdigest()
        with self._lock:
            seen = key in self._cached_prefixes
            self._cached_prefixes.add(key)
        split = {"cache_read_tokens": tokens} if seen else {"cache_write_tokens": tokens}
        return replace(reply, **split), max(1, input_tokens - tokens)

    def _next(self, provider: str, model: str) -> Script:
        with self._lock:
            if model and model in self._retired:
                return Failure.model_not_found(model)
            if provider in self._always:
                return self._always[provider]
            queue = self._queues[provider]
            if queue:
                return queue.popleft()
        return self.default_reply


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay to first byte (chat)")
    parser.add_argument("--embedding-latency-ms", type=float, default=0.0)
    parser.add_argument("--text", default=Reply().text, help="the default reply text")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        args.host,
        args.port,
        latency_s=args.latency_ms / 1000,
        embedding_latency_s=args.embedding_latency_ms / 1000,
        default_reply=Reply(text=args.text),
    )
    server.start()
    print(
        f"fake LLM server on {server.base_url} (anthropic: {server.anthropic_base_url}, "
        f"openai: {server.openai_base_url}); Ctrl-C to stop",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
