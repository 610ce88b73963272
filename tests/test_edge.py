"""The JSON edge on its own: what it refuses, the field it names, and that it stays linear
on input built to make a parser or a regex slow."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from services.api.edge import MAX_JSON_DEPTH, json_query_parameters, parse_json
from services.errors import InvalidInput


def refused(raw: bytes | str, field: str | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_json(raw, field)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"content": "a\\ud800b"}', "content"),
        (b'{"content": "\\udfff"}', "content"),
        ('{"content": "a\ud800b"}'.encode("utf-8", "surrogatepass"), "body"),  # raw bytes
        (b'{"metadata": {"a": ["x", "\\ud83d"]}}', "metadata.a.1"),
        (b'{"metadata": {"\\udc00": 1}}', "metadata.\ufffd"),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "messages.0.content"),
        (b'"\\ud800"', "body"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(raw, field):
    error = refused(raw)
    assert error.field == field
    assert "surrogate" in error.message or "UTF-8" in error.message
    json.dumps(error.message, ensure_ascii=False).encode()  # the message itself is sendable


def test_surrogate_pairs_and_other_unicode_pass():
    text = "emoji \U0001f600, RTL \u202e, BOM \ufeff, NUL-free"
    assert parse_json(json.dumps({"content": text}).encode(), None) == {"content": text}
    assert parse_json(b'{"c": "\\ud83d\\ude00"}', None) == {"c": "\U0001f600"}


def test_nesting_is_limited_at_the_named_depth():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(at_limit, None) is not None
    assert refused("[" + at_limit + "]").field == "body"
    deep = '{"content": "x", "metadata": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001
    error = refused(deep)
    assert error.field == "metadata" and str(MAX_JSON_DEPTH) in error.message
    assert refused('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "filter").field == "filter.a"
    # Brackets inside strings are text, not nesting.
    assert parse_json(json.dumps({"k[{": "[" * 1000}), None) == {"k[{": "[" * 1000}


@pytest.mark.parametrize(
    "raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e999}', b"\xff{}"]
)
def test_what_is_not_json_is_refused(raw):
    assert refused(raw).field == "body"


def test_a_query_parameter_names_itself():
    error = refused('{"tag": "\\ud800"}', "filter")
    assert error.field == "filter.tag" and "filter.tag" in error.message
    assert refused("not json", "filter").field == "filter"


@pytest.mark.parametrize(
    "raw",
    [
        '"\\' * 500_000,  # an unterminated string at every other character
        '"' + "a" * 1_000_000,
        "[" * 1_000_000,
        '{"a": ' * 200_000,
        json.dumps(["x"] * 150_000),
        json.dumps({f"k{i}": i for i in range(60_000)}),
    ],
    ids=["quotes", "unterminated", "brackets", "objects", "many-strings", "many-keys"],
)
def test_a_megabyte_of_adversarial_json_is_checked_in_linear_time(raw):
    started = time.perf_counter()
    with contextlib.suppress(InvalidInput):
        parse_json(raw, None)
    assert time.perf_counter() - started < 2.0  # quadratic would be minutes


def test_json_query_parameters_come_from_the_openapi_document():
    assert json_query_parameters("/v1/memories/search", "GET") == ["filter"]
    assert json_query_parameters("/v1/memories", "GET") == []
    assert json_query_parameters("/v1/memories/<uuid:memory_id>", "PATCH") == []
    assert json_query_parameters(None, "GET") == []
