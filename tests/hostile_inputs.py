"""Hostile input for every operation of the API, shared by the hostile test suite
(tests/test_hostile.py) and its benchmark (``python -m bench.hostile``); no pytest here.

An :class:`Operation` comes from the OpenAPI document, so a new route is covered without
being listed. A *slot* is where a hostile value goes: a path or query parameter, a header,
one body field (or a metadata value or key, or a chat message's content), or the whole
body. A :class:`Value` is a string, or JSON text for where JSON goes (so it can hold what
``json.dumps`` cannot make: nesting 100,000 deep, ``NaN``, broken JSON).

:func:`encode` turns (operation, slot, value) into the bytes a client would send, the way a
client would send them: strings in URLs are percent-encoded UTF-8 (a lone surrogate as its
"surrogatepass" bytes), header values go as latin-1 text of their UTF-8 bytes.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from services.api.openapi import PATHS, SCHEMAS

# Characters that have broken software before: lone surrogates (both halves), NUL and
# other controls, bidirectional overrides and marks, zero-width and BOM, a non-character,
# the replacement character, combining marks, astral emoji, quotes and backslashes.
HOSTILE_CHARS = (
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\n",
    "\r",
    "\t",
    "\u202e",
    "\u202d",
    "\u200f",
    "\u200e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\uffff",
    "\ufffd",
    "\u0301",
    "\U0001f600",
    '"',
    "'",
    "\\",
    "%",
    "/",
)

HOSTILE_STRINGS = (
    "a\ud800b",
    "\udfff",
    "\ud83d",  # the first half of an emoji, alone
    "a\x00b",
    "\x00",
    "\u202etxt.exe",
    "\u200f\u200e\u2066\u2069",
    "\ufeff",
    "\u200b",
    "",
    " ",
    "\n\r\t",
    "x" * 1_000_000,  # 1 MB
    "x" * 100_000 + "\x00",  # backtracking bait for "anything, then a non-space" patterns
    " " * 100_000 + "\x00",
    "\u00e9" * 300_000,  # 600 KB of two-byte characters
    "%s%n%x{0}{}",
    "' OR 1=1 --",
    "../../etc/passwd",
    "\U0001f600" * 50,
    "Z\u0351\u036b\u0343\u036a" * 200,  # combining marks
    "9" * 5000,  # past Python's int-from-string digit limit
    "2026-13-45T99:99:99Z",
    "00000000-0000-0000-0000-000000000000",
)

NUMBERS = ("1e308", "1e999", "-1e999", "-0", "18446744073709551616", "1" * 5000, "0.1e-400")


def deep(depth: int, kind: str = "[") -> str:
    """JSON nested ``depth`` levels deep (arrays, or single-key objects)."""
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# JSON texts (hostile strings go in as JSON strings, their surrogates as \\udXXX escapes).
HOSTILE_JSON = (
    *NUMBERS,
    '"a\ud800b"',  # the surrogate itself, not an escape: its raw bytes go on the wire
    "NaN",
    "Infinity",
    "null",
    "true",
    "[]",
    "{}",
    '{"\\ud800": 1}',
    '["\\udc00"]',
    deep(33),
    deep(40, "{"),
    deep(5_000),
    deep(100_000),
    deep(100_000, "{"),
    "[" * 50_000,  # unterminated
    '"unterminated',
    '"\\' * 100_000,  # unterminated strings at every other character
    "{,}",
    "\x00",
)

# A body that passes the schema, per request schema; hostile values replace one part of it.
VALID_BODIES: dict[str, dict] = {
    "ChatRequest": {"message": "hello"},
    "ChatCompletionRequest": {"messages": [{"role": "user", "content": "hello"}]},
    "MemoryCreate": {"content": "a hostile-suite memory"},
    "MemoryUpdate": {"content": "an updated hostile-suite memory"},
    "RetentionPolicy": {},
    "RestoreRequest": {"memory_ids": []},
}
# Parts below the top level that reach storage or the model.
NESTED_SLOTS: dict[str, tuple[str, ...]] = {
    "MemoryCreate": ("metadata.value", "metadata.key"),
    "MemoryUpdate": ("metadata.value", "metadata.key"),
    "ChatCompletionRequest": ("messages.content", "messages.part", "messages.role"),
    "RestoreRequest": ("memory_ids.item",),
}
HEADERS = ("Authorization", "X-Request-Id", "Idempotency-Key", "X-Thread-Id", "X-Act-As-User")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the OpenAPI template, e.g. /v1/memories/{memory_id}
    path_params: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    body: str | None = None  # the request schema's name

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def slots(self) -> list[str]:
        """Every place a hostile value can go, as "kind:name"."""
        found = [f"path:{p}" for p in self.path_params] + [f"query:{q}" for q in self.query]
        found += [f"header:{h}" for h in HEADERS]
        if self.body:
            found += ["body:", "body:@key"]
            found += [f"body:{p}" for p in SCHEMAS[self.body].get("properties", {})]
            found += [f"body:{p}" for p in NESTED_SLOTS.get(self.body, ())]
        return found


def operations() -> list[Operation]:
    """Every operation in the OpenAPI document."""
    found = []
    for path, methods in PATHS.items():
        for method, spec in methods.items():
            params = spec.get("parameters", [])
            schema = (
                spec.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            found.append(
                Operation(
                    method.upper(),
                    path,
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    tuple(p["name"] for p in params if p["in"] == "query"),
                    schema.get("$ref", "").rsplit("/", 1)[-1] or None,
                )
            )
    return found


@dataclass
class Request:
    method: str
    target: str  # path and query string, percent-encoded
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def wire_bytes(text: str) -> bytes:
    """What a client puts on the wire for ``text``: UTF-8, lone surrogates included."""
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Value:
    """A hostile value: ``text`` is JSON text when ``raw_json``, else a plain string (which
    goes into a body as a JSON string)."""

    text: str
    raw_json: bool = False

    def as_json(self) -> str:
        return self.text if self.raw_json else json.dumps(self.text)

    def as_string(self) -> str:
        return self.text


def encode(
    operation: Operation,
    slot: str,
    value: Value,
    *,
    secret: str,
    ids: dict[str, str],
) -> Request:
    """The request that puts ``value`` in ``slot`` of ``operation``; everything else is
    valid (``ids`` holds real path parameter values, ``secret`` the caller's API key)."""
    kind, _, name = slot.partition(":")
    path_values = {p: ids.get(p, "x") for p in operation.path_params}
    if kind == "path":
        path_values[name] = value.as_string()
    path = re.sub(
        r"\{(\w+)\}", lambda m: quote(wire_bytes(path_values[m.group(1)]), safe=""), operation.path
    )
    query = {"q": "hostile"} if "q" in operation.query else {}
    if kind == "query":
        query[name] = value.as_string()
    if query:
        path += "?" + "&".join(
            f"{quote(k)}={quote(wire_bytes(v), safe='')}" for k, v in query.items()
        )
    headers = {"Authorization": f"Bearer {secret}"}
    if kind == "header":
        # A server hands header bytes to the app as latin-1 text. CR and LF cannot be in a
        # header value on the wire (they end it), so they are left out.
        sent = wire_bytes(value.as_string()).decode("latin-1")
        headers[name] = sent.replace("\r", "").replace("\n", "")
    body = None
    if operation.body:
        headers["Content-Type"] = "application/json"
        text = json.dumps(VALID_BODIES[operation.body])
        if kind == "body":
            text = _place(operation.body, name, value.as_json())
        body = wire_bytes(text)
    return Request(operation.method, path, headers, body)


def _place(schema: str, name: str, text: str) -> str:
    """The schema's valid body with ``text`` (JSON) as the named part."""
    valid = dict(VALID_BODIES[schema])
    if name == "":
        return text
    if name == "@key":  # a hostile field name
        return json.dumps(valid)[:-1] + (", " if valid else "") + f"{text}: 1}}"
    top, _, part = name.partition(".")
    if not part:
        inner = text
    elif part == "value":
        inner = f'{{"k": {text}}}'
    elif part == "key":
        inner = f"{{{text}: 1}}"
    elif part == "part":
        inner = f'[{{"role": "user", "content": [{{"type": "text", "text": {text}}}]}}]'
    elif part in ("content", "role"):
        rest = {k: v for k, v in {"role": "user", "content": "hello"}.items() if k != part}
        inner = "[" + json.dumps(rest)[:-1] + f', "{part}": {text}}}]'
    else:  # item
        inner = f"[{text}]"
    valid.pop(top, None)
    return json.dumps(valid)[:-1] + (", " if valid else "") + f'"{top}": {inner}}}'


def takes_json(slot: str) -> bool:
    """Whether JSON text goes in the slot (a body part, or the search filter)."""
    return slot.startswith("body:") or slot == "query:filter"


def values_for(slot: str) -> list[Value]:
    """The fixed hostile values for a slot: JSON texts too where JSON goes."""
    strings = [Value(s) for s in HOSTILE_STRINGS]
    if takes_json(slot):
        return strings + [Value(text, raw_json=True) for text in HOSTILE_JSON]
    return strings


def generated(seed: int, count: int) -> list[tuple[Operation, str, Value]]:
    """``count`` (operation, slot, value) triples spread over every operation: each fixed
    value in each slot once, in a seeded order, then seeded mixes of hostile characters."""
    rng = random.Random(seed)
    fixed = [(op, slot, v) for op in operations() for slot in op.slots() for v in values_for(slot)]
    rng.shuffle(fixed)
    out = fixed[:count]
    ops = operations()
    while len(out) < count:
        op = rng.choice(ops)
        slot = rng.choice(op.slots())
        out.append((op, slot, Value(mixed(rng))))
    return out


def mixed(rng: random.Random, size: int = 40) -> str:
    """A string of hostile characters and ordinary text."""
    return "".join(rng.choice(HOSTILE_CHARS + ("a", "b", " ")) for _ in range(size))
