"""The published OpenAPI document promises exactly the limits the validators enforce: each
bound is read from the document, and the store's checks must accept a value at it and
refuse one past it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.api.openapi import document
from services.config import Settings
from services.errors import InvalidInput
from services.limits import MAX_CONTENT_CHARS
from services.memories.records import StoreLimits
from services.memories.validation import check_content, check_id, check_limit, check_query


def schemas() -> dict[str, Any]:
    return json.loads(json.dumps(document()))["components"]["schemas"]


def parameter(path: str, name: str) -> dict[str, Any]:
    operation = document()["paths"][path]["get"]
    return next(p["schema"] for p in operation["parameters"] if p["name"] == name)


def refused(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except InvalidInput:
        return True
    return False


def test_content_and_context_length_is_what_the_store_enforces():
    limit = StoreLimits().max_content_chars
    assert Settings().max_content_chars == limit
    create = schemas()["MemoryCreate"]["properties"]
    for field in ("content", "context"):
        assert create[field]["maxLength"] == limit, field
    assert check_content("x" * limit, "content", limit)
    assert refused(check_content, "x" * (limit + 1), "content", limit)


def test_search_query_length_is_what_the_store_enforces():
    limit = parameter("/v1/memories/search", "q")["maxLength"]
    assert limit == StoreLimits().max_content_chars
    assert check_query("q" * limit, StoreLimits().max_content_chars)
    assert refused(check_query, "q" * (limit + 1), StoreLimits().max_content_chars)


@pytest.mark.parametrize("field", ["key", "namespace"])
def test_id_length_is_what_the_store_enforces(field):
    limit = schemas()["MemoryCreate"]["properties"][field]["maxLength"]
    assert limit == parameter("/v1/memories", "namespace")["maxLength"]
    assert check_id("i" * limit, field)
    assert refused(check_id, "i" * (limit + 1), field)


@pytest.mark.parametrize("path", ["/v1/memories", "/v1/memories/search"])
def test_page_limit_is_what_the_store_enforces(path):
    bounds = parameter(path, "limit")
    assert bounds["minimum"] == 1 and check_limit(1) == 1
    assert refused(check_limit, 0)
    assert check_limit(bounds["maximum"]) == bounds["maximum"]
    assert refused(check_limit, bounds["maximum"] + 1)


def test_the_readme_states_the_default_the_settings_use():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    row = re.search(r"^\| `MAX_CONTENT_CHARS` \| `(\d+)` \|", readme, flags=re.MULTILINE)
    assert (
        row is not None and int(row.group(1)) == MAX_CONTENT_CHARS == Settings().max_content_chars
    )


def test_chat_message_length_is_what_the_agent_enforces():
    from services.agent import check_message_text

    limit = schemas()["ChatRequest"]["properties"]["message"]["maxLength"]
    assert check_message_text("m" * limit)
    assert refused(check_message_text, "m" * (limit + 1))
    part = schemas()["ContentPart"]["then"]["properties"]["text"]["maxLength"]
    assert part == limit


def test_thread_ids_are_what_the_thread_store_enforces():
    from services.threads import check_thread_id

    pattern = schemas()["ChatRequest"]["properties"]["thread_id"]["pattern"]
    longest = int(re.search(r"\{1,(\d+)\}", pattern).group(1))
    assert check_thread_id("t" * longest)
    assert refused(check_thread_id, "t" * (longest + 1))
    assert refused(check_thread_id, "no spaces")
