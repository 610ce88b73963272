"""Mixed API traffic for outage experiments, shared by the fault suite and bench/faults.py.

Worker threads call every kind of endpoint in turn (memory writes, reads and searches,
chat with and without streaming, threads, usage, retention, export), one user per worker,
and record each call: when, the status, ``Retry-After``, the JSON error code. Writes the
API acknowledged (a 2xx memory write, a chat turn answered without an error) are kept, so
``lost_writes`` can check afterwards that every one of them is still there.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

OPS = (
    "write",
    "read",
    "search",
    "chat",
    "write",
    "threads",
    "chat_stream",
    "usage",
    "retention",
    "export",
)


@dataclass(frozen=True)
class Call:
    op: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (refused, reset, timed out)
    retry_after: str | None = None
    code: str | None = None  # the JSON error code, if the body was one
    json_error: bool = False  # a non-2xx answer came with a JSON error body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Ack:
    """A write the API acknowledged: a memory (id) or a chat turn (thread id)."""

    kind: str
    ident: str
    text: str
    secret: str


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def call(
    base: str,
    secret: str,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection; status 0 when there is no HTTP answer."""
    target = urlparse(base)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {secret}"}
    body = None
    if payload is not None:
        body = json.dumps(payload)
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException):
        return Reply(0, {}, b"")
    finally:
        connection.close()


@dataclass
class Traffic:
    """``len(secrets)`` worker threads, one user each, until ``stop``."""

    base: str
    secrets: list[str]
    pause_after_failure: float = 0.05
    calls: list[Call] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for index, secret in enumerate(self.secrets):
            thread = threading.Thread(target=self._run, args=(index, secret), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, index: int, secret: str) -> None:
        step = index  # workers start at different operations
        thread_id: str | None = None
        while not self._stop.is_set():
            op = OPS[step % len(OPS)]
            step += 1
            started = time.monotonic()
            reply, ack, thread_id = self._one(op, secret, thread_id)
            record = _record(op, started, reply)
            with self._lock:
                self.calls.append(record)
                if ack is not None and record.ok:
                    self.acks.append(ack)
            if not record.ok:
                time.sleep(self.pause_after_failure)

    def _one(
        self, op: str, secret: str, thread_id: str | None
    ) -> tuple[Reply, Ack | None, str | None]:
        token = uuid.uuid4().hex[:12]
        if op == "write":
            text = f"fact {token}: the user keeps a {token} notebook"
            reply = call(
                self.base, secret, "POST", "/v1/memories", {"content": text, "key": f"k{token}"}
            )
            memory = reply.json() if reply.status in (200, 201) else None
            ack = Ack("memory", memory["id"], text, secret) if memory else None
            return reply, ack, thread_id
        if op in ("chat", "chat_stream"):
            text = f"note {token}: remember this"
            payload: dict[str, Any] = {"message": text, "stream": op == "chat_stream"}
            if thread_id:
                payload["thread_id"] = thread_id
            reply = call(self.base, secret, "POST", "/v1/chat", payload, timeout=30)
            final = _final_event(reply, streamed=op == "chat_stream")
            if final is None:
                return reply, None, None  # start a new thread next time
            if not final["saved"]:
                # An existing thread keeps its earlier turns; a new one whose first turn was
                # not saved does not exist, as the error says: start again without it.
                return reply, None, thread_id
            return reply, Ack("chat", final["thread_id"], text, secret), final["thread_id"]
        path = {
            "read": "/v1/memories?limit=20",
            "search": "/v1/memories/search?q=notebook&limit=5",
            "threads": "/v1/threads?limit=10",
            "usage": "/v1/usage?days=1",
            "retention": "/v1/me/retention",
            "export": "/v1/me/export",
        }[op]
        return call(self.base, secret, "GET", path), None, thread_id


def _record(op: str, started: float, reply: Reply) -> Call:
    data = reply.json() if reply.status and not 200 <= reply.status < 300 else None
    error = data.get("error") if isinstance(data, dict) else None
    return Call(
        op=op,
        started=started,
        ended=time.monotonic(),
        status=reply.status,
        retry_after=reply.headers.get("retry-after"),
        code=error.get("code") if isinstance(error, dict) else None,
        json_error=isinstance(error, dict),
    )


def _final_event(reply: Reply, streamed: bool) -> dict[str, Any] | None:
    """The turn's thread and whether it was saved, from a 200 answer; None otherwise."""
    if reply.status != 200:
        return None
    if not streamed:
        data = reply.json() or {}
        errors = [e.get("code") for e in data.get("errors", [])]
        return {"thread_id": data.get("thread_id"), "saved": "persistence_failed" not in errors}
    events = []
    for block in reply.body.decode("utf-8", "replace").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines and "data" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    if not events or events[-1][0] != "final":
        return None  # a stream cut short is not an acknowledgement
    codes = [data.get("code") for name, data in events if name == "error"]
    return {"thread_id": events[-1][1]["thread_id"], "saved": "persistence_failed" not in codes}


def lost_writes(base: str, acks: list[Ack]) -> list[Ack]:
    """The acknowledged writes that cannot be read back (with their exact text)."""
    lost = []
    turns: dict[tuple[str, str], set[str]] = {}
    for ack in acks:
        if ack.kind == "memory":
            reply = call(base, ack.secret, "GET", f"/v1/memories/{ack.ident}")
            if reply.status != 200 or (reply.json() or {}).get("content") != ack.text:
                lost.append(ack)
            continue
        key = (ack.secret, ack.ident)
        if key not in turns:
            reply = call(base, ack.secret, "GET", f"/v1/threads/{ack.ident}?limit=200")
            messages = (reply.json() or {}).get("messages", []) if reply.status == 200 else []
            turns[key] = {m["content"] for m in messages if m["role"] == "user"}
        if ack.text not in turns[key]:
            lost.append(ack)
    return lost


# ---- figures ----------------------------------------------------------------------------------


def failed(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.ok]


def share_503_with_retry_after(calls: list[Call]) -> float:
    """Of the failed calls, the share that were a JSON 503 with a Retry-After header."""
    bad = failed(calls)
    if not bad:
        return 1.0
    good = [c for c in bad if c.status == 503 and c.retry_after and c.json_error]
    return len(good) / len(bad)


def first_success_after(calls: list[Call], moment: float) -> float | None:
    """Seconds from ``moment`` to the end of the first 2xx call started after it."""
    ends = [c.ended for c in calls if c.ok and c.started >= moment]
    return min(ends) - moment if ends else None


def bytes_in_redis(client: Any, needle: bytes) -> int:
    """How many bytes of ``needle`` occur in any key or value held in Redis."""
    total = 0
    for key in client.scan_iter(count=1000):
        values = [key]
        kind = client.type(key)
        if kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"string":
            values.append(client.get(key) or b"")
        elif kind == b"hash":
            values += list(client.hgetall(key).values())
        total += sum(value.count(needle) * len(needle) for value in values)
    return total
