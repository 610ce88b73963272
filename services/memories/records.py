"""The records of the memory store, and how a database row becomes one.

A select list is a ``Columns``: the SQL expression of each column under the name of the
field it fills, so a row is read by name, never by position. ``memory`` turns such a row
(or one with ranks after the memory's columns) into a ``Memory``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from services.limits import MAX_CONTENT_CHARS

DEFAULT_NAMESPACE = "default"
SearchMode = Literal["hybrid", "vector", "lexical"]
Kind = Literal["fact", "episode"]
KINDS: tuple[Kind, ...] = ("fact", "episode")
Op = Literal["ADD", "UPDATE", "DELETE", "MERGED", "UNCHANGED"]


@dataclass(frozen=True)
class Memory:
    id: str
    user_id: str
    namespace: str
    key: str
    content: str
    context: str
    metadata: dict[str, Any]
    importance: float
    embedded: bool
    observed_at: datetime
    created_at: datetime
    updated_at: datetime
    last_accessed_at: datetime | None
    access_count: int
    expires_at: datetime | None
    version: int
    kind: Kind = "fact"


@dataclass(frozen=True)
class MemoryEvent:
    id: int
    memory_id: str
    op: str
    old_content: str | None
    new_content: str | None
    old_context: str | None
    new_context: str | None
    version: int
    actor: str
    request_id: str | None
    superseded_at: datetime | None
    merged_into: str | None
    created_at: datetime


@dataclass(frozen=True)
class Written:
    """The outcome of a write: the memory as stored and what happened to it."""

    memory: Memory
    op: Op


@dataclass(frozen=True)
class SearchHit:
    memory: Memory
    score: float
    vector_rank: int | None
    lexical_rank: int | None
    similarity: float | None


@dataclass(frozen=True)
class RankedMemory:
    """A candidate of the retrieval pipeline: a memory and its place in each ranking."""

    memory: Memory
    vector_rank: int | None
    lexical_rank: int | None
    scoped_rank: int | None  # among the memories matching the pipeline's scope filter
    similarity: float | None


@dataclass(frozen=True)
class Page:
    items: list[Memory]
    next_cursor: str | None


@dataclass(frozen=True)
class NewMemory:
    """One memory for ``add_many`` (bulk import); the key defaults to the new id."""

    content: str
    context: str = ""
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    importance: float = 0.5
    observed_at: datetime | None = None
    expires_at: datetime | None = None
    embedding: Sequence[float] | None = None
    kind: Kind = "fact"


@dataclass(frozen=True)
class StoreLimits:
    max_content_chars: int = MAX_CONTENT_CHARS
    hnsw_index: bool = False
    hnsw_min_rows: int = 5000


class Columns:
    """A select list whose rows are read by name: ``sql`` is ``expr AS name, ...``."""

    def __init__(self, expressions: dict[str, str]) -> None:
        self.expressions = dict(expressions)
        self.names = tuple(expressions)
        self.sql = ", ".join(f"{expr} AS {name}" for name, expr in expressions.items())

    def __add__(self, more: dict[str, str]) -> Columns:
        return Columns({**self.expressions, **more})

    def only(self, *names: str) -> Columns:
        return Columns({name: self.expressions[name] for name in names})

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.names, row, strict=True))


def _fields(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record))


def check_columns(columns: Columns, record: type) -> Columns:
    """``columns`` must name exactly the fields of ``record``: checked once, at import."""
    if set(columns.names) != set(_fields(record)):
        raise TypeError(f"columns {columns.names} do not match {record.__name__}")
    return columns


def memory_from(values: dict[str, Any]) -> Memory:
    """A ``Memory`` from a row read by name; the memory's own columns only."""
    if isinstance(values["metadata"], str):
        values["metadata"] = json.loads(values["metadata"])
    values["importance"] = float(values["importance"])
    return Memory(**values)


def optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def search_hit(values: dict[str, Any], ideal_score: float) -> SearchHit:
    """A search row read by name; the fused score scaled by the best one possible."""
    similarity, score = values.pop("similarity"), values.pop("score")
    return SearchHit(
        vector_rank=values.pop("vector_rank"),
        lexical_rank=values.pop("lexical_rank"),
        similarity=optional_float(similarity),
        score=float(score) / ideal_score,
        memory=memory_from(values),  # last: what is left are the memory's columns
    )


def ranked_memory(values: dict[str, Any]) -> RankedMemory:
    """A candidate row of the retrieval pipeline read by name."""
    similarity = values.pop("similarity")
    return RankedMemory(
        vector_rank=values.pop("vector_rank"),
        lexical_rank=values.pop("lexical_rank"),
        scoped_rank=values.pop("scoped_rank"),
        similarity=optional_float(similarity),
        memory=memory_from(values),  # last: what is left are the memory's columns
    )
