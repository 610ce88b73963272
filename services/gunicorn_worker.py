"""The gunicorn worker classes (``worker_class`` in gunicorn.conf.py): gunicorn's gevent
worker (the default) and its threaded one, except that the errors gunicorn answers itself,
before the app sees the request (a malformed request line, a header too large or with an
invalid character, a bad chunk), leave in the app's JSON error shape ``{"error": {"code",
"message", "field"?}}`` instead of gunicorn's HTML page.

gunicorn still decides the status and logs the error: its own ``handle_error`` runs with a
socket stand-in that keeps the page it would have sent, and only the status line of that
page is used.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

MAX_MESSAGE_CHARS = 300
LINGER_SECONDS = 2.0
LINGER_BYTES = 8 * 1024 * 1024
_FIELDS: tuple[tuple[tuple[type[Exception], ...], str], ...] = (
    (
        (
            errors.InvalidRequestLine,
            errors.InvalidRequestMethod,
            errors.InvalidHTTPVersion,
            errors.LimitRequestLine,
        ),
        "request_line",
    ),
    (
        (
            errors.InvalidHeader,
            errors.InvalidHeaderName,
            errors.LimitRequestHeaders,
            errors.ObsoleteFolding,
            errors.InvalidSchemeHeaders,
            errors.ExpectationFailed,
        ),
        "headers",
    ),
    (
        (
            errors.InvalidChunkSize,
            errors.ChunkMissingTerminator,
            errors.InvalidChunkExtension,
            errors.UnsupportedTransferCoding,
        ),
        "body",
    ),
)


class _JsonErrors:
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        page = _KeptPage()
        super().handle_error(req, page, addr, exc)
        if page.status is None:  # gunicorn sent nothing: neither do we
            return
        try:
            util.write_nonblock(client, json_error(page.status, page.reason, exc))
        except Exception:  # the client is gone; gunicorn ignores this too
            self.log.debug("Failed to send error message.")


class JsonErrorWorker(_JsonErrors, ThreadWorker):
    """gthread: a thread per request in flight (``GUNICORN_WORKER=gthread``)."""


class JsonErrorGeventWorker(_JsonErrors, GeventWorker):
    """gevent: a greenlet per request in flight. An open stream mostly waits on the model's
    socket; a greenlet switch there is cheaper than handing the GIL between up to 80 OS
    threads (docs/BENCHMARKS.md, "Worker class")."""

    def patch(self) -> None:
        super().patch()
        # gRPC (Pub/Sub, Secret Manager) runs threads and a completion queue of its own;
        # its documented gevent support is switched on after the patching and before any
        # channel exists.
        import grpc.experimental.gevent

        grpc.experimental.gevent.init_gevent()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except StopIteration:  # gunicorn's "close this connection now"
            linger(sock)
            raise


def linger(sock: socket.socket) -> None:
    """Half-close, then read and drop what the client is still sending (a body the app
    refused unread), within bounds, before gunicorn closes. Closing a socket with unread
    bytes makes the kernel send a reset, which can destroy the response the client has
    not read yet: a JSON 413 for a body too large arrived as "connection reset"."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        budget = LINGER_BYTES
        while budget > 0 and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                return
            budget -= len(data)
    except OSError:  # the client is gone or slow: gunicorn closes either way
        pass


def json_error(status: int, reason: str, exc: BaseException) -> bytes:
    """A whole HTTP/1.1 response carrying the JSON error for ``exc``."""
    error: dict[str, str]
    if status >= 500 and status != 501:  # the server's fault: say nothing of its insides
        error = {"code": "internal", "message": "internal error"}
    else:
        message = str(exc) or reason
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        error = {"code": reason.lower().replace(" ", "_"), "message": message}
        field = next((name for kinds, name in _FIELDS if isinstance(exc, kinds)), None)
        if field:
            error["field"] = field
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _KeptPage:
    """Stands in for the client socket in gunicorn's ``handle_error``: keeps the status
    line of the page gunicorn writes instead of sending it."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.reason = ""

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking already": gunicorn then just calls sendall

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        _, status, reason = (status_line.split(" ", 2) + ["", ""])[:3]
        self.status, self.reason = int(status), reason
