"""A wire-level fake of the Cloud Storage JSON API, for pointing the real
google-cloud-storage client at in tests (``STORAGE_EMULATOR_HOST`` or
``client_options={"api_endpoint": fake.url}``).

Implements what an archive needs: multipart and resumable uploads
(``POST /upload/storage/v1/b/B/o``), bucket metadata, media downloads
(``GET /download/storage/v1/b/B/o/O`` and ``GET /storage/v1/b/B/o/O?alt=media``), object
metadata, listing with ``prefix`` and paging (``pageToken``; ``page_size`` items a page,
so paging is always exercised), and deletion. Objects live in memory per bucket. Every
request is recorded (:attr:`FakeGcsServer.requests`); :meth:`FakeGcsServer.fail_next` makes
the next N requests (optionally only of one method) answer a JSON API error such as 503.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_crc32c


@dataclass(frozen=True)
class GcsRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    generation: int
    metadata: dict[str, Any]


def _crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's own hash


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ---- plumbing -------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        request = GcsRequest(
            method, parsed.path, query, {k.lower(): v for k, v in self.headers.items()}, body
        )
        fake._record(request)
        failure = fake._take_failure(method)
        if failure is not None:
            status, message = failure
            self._error(status, message)
            return
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/")]
        try:
            self._route(method, parts, query, body)
        except KeyError:
            self._error(404, "No such object")

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: bytes) -> None:
        # ['', 'upload', 'storage', 'v1', 'b', B, 'o']
        if parts[1:4] == ["upload", "storage", "v1"] and parts[4] == "b" and parts[6:] == ["o"]:
            self._upload(method, parts[5], query, body)
        elif parts[1:4] == ["download", "storage", "v1"] and parts[4] == "b" and parts[6] == "o":
            self._download(parts[5], "/".join(parts[7:]))
        elif parts[1:3] == ["storage", "v1"] and parts[3] == "b" and len(parts) == 5:
            # bucket metadata (the client's tracing fetches it in the background)
            bucket = {"kind": "storage#bucket", "name": parts[4], "id": parts[4]}
            self._send_json(200, {**bucket, "location": "US", "metageneration": "1"})
        elif parts[1:3] == ["storage", "v1"] and parts[3] == "b" and len(parts) >= 6:
            bucket = parts[4]
            name = "/".join(parts[6:])
            if method == "GET" and not name:
                self._list(bucket, query)
            elif method == "GET" and query.get("alt") == "media":
                self._download(bucket, name)
            elif method == "GET":
                self._send_json(200, self.server.fake._resource(bucket, name))
            elif method == "DELETE":
                self.server.fake._delete(bucket, name)
                self._send(204, b"", "application/json")
            else:
                self._error(405, f"{method} not supported")
        else:
            self._error(404, f"no route for {method} {'/'.join(parts)}")

    def _upload(self, method: str, bucket: str, query: dict[str, str], body: bytes) -> None:
        fake = self.server.fake
        kind = query.get("uploadType")
        if kind == "multipart":
            metadata, data, content_type = _split_multipart(self.headers["content-type"], body)
            name = metadata.get("name") or query["name"]
            self._send_json(200, fake._put(bucket, name, data, content_type, metadata))
        elif kind == "media":
            content_type = self.headers.get("content-type", "application/octet-stream")
            self._send_json(200, fake._put(bucket, query["name"], body, content_type, {}))
        elif kind == "resumable" and method == "POST":
            metadata = json.loads(body or b"{}")
            session = uuid.uuid4().hex
            fake._sessions[session] = (bucket, metadata.get("name") or query.get("name"), metadata)
            host = self.headers.get("host")
            location = f"http://{host}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
            self._send(200, b"", "text/plain", {"Location": f"{location}&upload_id={session}"})
        elif kind == "resumable" and method == "PUT":
            bucket, name, metadata = fake._sessions.pop(query["upload_id"])
            content_type = metadata.get("contentType", "application/octet-stream")
            self._send_json(200, fake._put(bucket, name, body, content_type, metadata))
        else:
            self._error(400, f"unsupported uploadType {kind!r}")

    def _download(self, bucket: str, name: str) -> None:
        stored = self.server.fake._get(bucket, name)
        hashes = f"crc32c={_crc32c_b64(stored.data)},md5={_md5_b64(stored.data)}"
        self._send(
            200,
            stored.data,
            stored.content_type,
            {"X-Goog-Hash": hashes, "X-Goog-Generation": str(stored.generation)},
        )

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        fake = self.server.fake
        prefix = query.get("prefix", "")
        names = sorted(n for n in fake._objects.get(bucket, {}) if n.startswith(prefix))
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("maxResults") or fake.page_size), fake.page_size)
        page = names[start : start + size]
        payload: dict[str, Any] = {
            "kind": "storage#objects",
            "items": [fake._resource(bucket, n) for n in page],
        }
        if start + size < len(names):
            payload["nextPageToken"] = str(start + size)
        self._send_json(200, payload)

    def _error(self, status: int, message: str) -> None:
        self._send_json(
            status,
            {"error": {"code": status, "message": message, "errors": [{"message": message}]}},
        )

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=UTF-8")

    def _send(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes, str]:
    """The JSON metadata part and the media part of a ``multipart/related`` upload."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    metadata_part, media_part = list(message.iter_parts())
    metadata = json.loads(metadata_part.get_payload(decode=True))
    data = media_part.get_payload(decode=True)
    return metadata, data, media_part.get_content_type()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGcsServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its keep-alive connection is not an error worth printing


class FakeGcsServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, page_size: int = 2) -> None:
        self.page_size = page_size
        self._objects: dict[str, dict[str, StoredObject]] = {}
        self._sessions: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._requests: list[GcsRequest] = []
        self._failures: deque[tuple[str | None, int, str]] = deque()
        self._lock = threading.Lock()
        self._generation = int(time.time() * 1_000_000)
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeGcsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeGcsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- scripting and inspection -----------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503, method: str | None = None) -> None:
        """The next ``count`` requests (of ``method``, if given) get ``status``."""
        with self._lock:
            for _ in range(count):
                self._failures.append((method, status, "Service Unavailable (scripted)"))

    def heal(self) -> None:
        """Drop the scripted failures not used yet."""
        with self._lock:
            self._failures.clear()

    def reset(self) -> None:
        with self._lock:
            self._objects.clear()
            self._sessions.clear()
            self._requests.clear()
            self._failures.clear()

    @property
    def requests(self) -> list[GcsRequest]:
        """Object requests (bucket metadata fetches left out), in arrival order."""
        with self._lock:
            return [r for r in self._requests if "/o" in r.path]

    def objects(self, bucket: str) -> dict[str, bytes]:
        with self._lock:
            return {name: o.data for name, o in self._objects.get(bucket, {}).items()}

    def content_type(self, bucket: str, name: str) -> str:
        with self._lock:
            return self._objects[bucket][name].content_type

    # ---- the store (called by the handler) --------------------------------------------------

    def _record(self, request: GcsRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _take_failure(self, method: str) -> tuple[int, str] | None:
        with self._lock:
            for index, (only, status, message) in enumerate(self._failures):
                if only is None or only == method:
                    del self._failures[index]
                    return status, message
        return None

    def _put(
        self, bucket: str, name: str, data: bytes, content_type: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            self._generation += 1
            self._objects.setdefault(bucket, {})[name] = StoredObject(
                data, content_type, self._generation, dict(metadata.get("metadata") or {})
            )
        return self._resource(bucket, name)

    def _get(self, bucket: str, name: str) -> StoredObject:
        with self._lock:
            return self._objects[bucket][name]

    def _delete(self, bucket: str, name: str) -> None:
        with self._lock:
            del self._objects[bucket][name]

    def _resource(self, bucket: str, name: str) -> dict[str, Any]:
        stored = self._get(bucket, name)
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{stored.generation}",
            "name": name,
            "bucket": bucket,
            "generation": str(stored.generation),
            "metageneration": "1",
            "contentType": stored.content_type,
            "size": str(len(stored.data)),
            "md5Hash": _md5_b64(stored.data),
            "crc32c": _crc32c_b64(stored.data),
            "metadata": stored.metadata,
        }
