"""The JSON edge: every JSON request body and every JSON-valued query parameter is parsed
here, once, before any handler runs, and handlers read the parsed values from here.

Python's ``json`` module accepts what the rest of the stack cannot take: lone UTF-16
surrogates (``"\\ud800"``), which PostgreSQL, the embedder and the response encoder refuse,
``NaN``/``Infinity``, which are not JSON, and nesting deep enough to raise
``RecursionError`` in the parser and in every recursive consumer after it. All of them are
refused with a 400 naming the field, so a stream never starts on such input.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Request, g
from werkzeug.exceptions import HTTPException

from services.api.openapi import PATHS
from services.errors import InvalidInput

MAX_JSON_DEPTH = 32

# A JSON string (a key when a colon follows), a quote that opens no whole string, or a
# bracket. The string pattern is the unrolled form: linear even in a megabyte string.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?|"|[\[\]{}]', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
_RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_MISSING = object()


def parse_request(request: Request) -> None:
    """Parse and check the request's JSON body and JSON query parameters (kept on ``g``).

    A body that is not sent as JSON is left alone: a handler that needs one says so."""
    g.edge_body = _MISSING
    if request.is_json:
        raw = read_body(request)
        if raw:
            g.edge_body = parse_json(raw, None)
    g.edge_query = {}
    rule = request.url_rule.rule if request.url_rule else None
    for name in json_query_parameters(rule, request.method):
        raw = request.args.get(name)
        if raw is not None:
            g.edge_query[name] = parse_json(raw, name)


def read_body(request: Request) -> bytes:
    """The whole body; 413 past MAX_CONTENT_LENGTH (with or without Content-Length), 400
    when the body cannot be read (a malformed chunk)."""
    try:
        raw = request.get_data(cache=True)
        limit = request.max_content_length
        if request.content_length is None and limit is not None and len(raw) >= limit:
            # A chunked body is cut at the limit without complaint; reading on raises 413.
            request.stream.read(1)
    except HTTPException:
        raise
    except Exception as error:  # the server's body reader refused what the client sent
        raise InvalidInput(f"the request body could not be read: {error}", "body") from None
    return raw


def body() -> Any:
    """The parsed JSON body; 400 when none was sent."""
    value = g.get("edge_body", _MISSING)
    if value is _MISSING:
        raise InvalidInput("the request body is not valid JSON", "body")
    return value


def query(name: str) -> Any | None:
    """A JSON query parameter the edge parsed (None when absent)."""
    return g.get("edge_query", {}).get(name)


def parse_json(raw: bytes | str, field: str | None) -> Any:
    """``raw`` as JSON, refusing invalid UTF-8, lone surrogates, NaN/Infinity and nesting
    deeper than :data:`MAX_JSON_DEPTH`; errors name ``field`` (None: the body)."""
    label = field or "the request body"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{label} is not valid UTF-8", field or "body") from None
    deep = _too_deep(raw)
    if deep is not None:
        where = _join(field, deep)
        raise InvalidInput(
            f"{where or label} is nested deeper than {MAX_JSON_DEPTH} levels", where or "body"
        )
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{label} is not valid JSON", field or "body") from None
    bad = _surrogate_path(value)
    if bad is not None:
        where = _join(field, bad)
        raise InvalidInput(
            f"{where or label} contains invalid Unicode (a lone UTF-16 surrogate)",
            where or "body",
        )
    return value


def json_query_parameters(rule: str | None, method: str) -> list[str]:
    """The query parameters the OpenAPI document declares as JSON for this route."""
    if rule is None:
        return []
    operation = PATHS.get(_RULE_VARIABLE.sub(r"{\1}", rule), {}).get(method.lower(), {})
    return [
        p["name"]
        for p in operation.get("parameters", [])
        if p.get("in") == "query" and "application/json" in p.get("content", {})
    ]


def _too_deep(text: str) -> str | None:
    """None if ``text`` nests at most MAX_JSON_DEPTH deep, else the top-level key it is
    under ("" when not under one). Counts brackets outside strings, without recursion."""
    depth = 0
    top_key = '""'  # kept raw: decoded only when it is needed for the error
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                try:
                    return _printable(json.loads(top_key))
                except ValueError:
                    return ""
        elif token == "]" or token == "}":
            depth -= 1
        elif token == '"':
            # An unterminated string: the JSON is invalid from here on and the parser stops
            # there too. Scanning on would retry the string at every later quote: quadratic.
            return None
        elif depth == 1 and match.group(1):
            top_key = token[: match.start(1) - match.start()]
    return None


def _surrogate_path(value: Any) -> str | None:
    """The dotted path of the first key or string holding a lone surrogate, else None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = _join(path or None, _printable(key))
                if _SURROGATE.search(key):
                    return child_path
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((_join(path or None, str(i)), child) for i, child in enumerate(item))
    return None


def _printable(name: str) -> str:
    """A key fit to be echoed in an error (its lone surrogates replaced)."""
    return _SURROGATE.sub("\ufffd", name)


def _join(prefix: str | None, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value
