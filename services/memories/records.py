"""The records of the memory store, and how a database row becomes one.

A select list is a ``Columns``: the SQL expression of each column under the name of the
field it fills, so a row is read by name, never by position. ``MEMORY`` and ``EVENT`` are
the select lists of a ``Memory`` and a ``MemoryEvent``; ``read_memory`` and the readers
built from a wider select list (a memory and its ranks) turn rows into records.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
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

    def pick(self, *names: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """The values of two or more ``names`` from a row, in that order."""
        if len(names) < 2:
            raise ValueError("pick takes two or more names")
        return operator.itemgetter(*(self.names.index(name) for name in names))


def _exactly(columns: Columns, record: type) -> Columns:
    """``columns`` must name exactly the fields of ``record``: checked once, at import."""
    if set(columns.names) != {f.name for f in fields(record)}:
        raise TypeError(f"columns {columns.names} do not match {record.__name__}")
    return columns


class _MemoryReader:
    """Reads the ``Memory`` out of a row of ``columns``: the positions of its fields are
    looked up by name once, so reading a row costs what ``Memory(*row)`` would."""

    def __init__(self, columns: Columns) -> None:
        at = [columns.names.index(name) for name in MEMORY_FIELDS]
        if at == list(range(at[0], at[0] + len(at))):  # in field order, together: one slice
            self._pick = operator.itemgetter(slice(at[0], at[0] + len(at)))
        else:
            self._pick = columns.pick(*MEMORY_FIELDS)

    def __call__(self, row: Sequence[Any]) -> Memory:
        values = list(self._pick(row))
        if isinstance(values[_METADATA], str):
            values[_METADATA] = json.loads(values[_METADATA])
        values[_IMPORTANCE] = float(values[_IMPORTANCE])
        return Memory(*values)


def optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def search_hit_reader(columns: Columns) -> Callable[[Sequence[Any], float], SearchHit]:
    """Rows of ``columns`` (a memory, its ranks and fused score) as ``SearchHit``s, the
    score scaled by the best one possible."""
    read_memory = _MemoryReader(columns)
    ranks = columns.pick("vector_rank", "lexical_rank", "similarity", "score")

    def read(row: Sequence[Any], ideal_score: float) -> SearchHit:
        vector_rank, lexical_rank, similarity, score = ranks(row)
        return SearchHit(
            memory=read_memory(row),
            score=float(score) / ideal_score,
            vector_rank=vector_rank,
            lexical_rank=lexical_rank,
            similarity=optional_float(similarity),
        )

    return read


def ranked_reader(columns: Columns) -> Callable[[Sequence[Any]], RankedMemory]:
    """Rows of ``columns`` (a memory and its place in each ranking) as ``RankedMemory``."""
    read_memory = _MemoryReader(columns)
    ranks = columns.pick("vector_rank", "lexical_rank", "scoped_rank", "similarity")

    def read(row: Sequence[Any]) -> RankedMemory:
        vector_rank, lexical_rank, scoped_rank, similarity = ranks(row)
        return RankedMemory(
            memory=read_memory(row),
            vector_rank=vector_rank,
            lexical_rank=lexical_rank,
            scoped_rank=scoped_rank,
            similarity=optional_float(similarity),
        )

    return read


MEMORY_FIELDS = tuple(f.name for f in fields(Memory))
_METADATA, _IMPORTANCE = MEMORY_FIELDS.index("metadata"), MEMORY_FIELDS.index("importance")
MEMORY = _exactly(
    Columns(
        {
            "id": "m.id::text",
            "user_id": "m.user_id",
            "namespace": "m.namespace",
            "key": "m.key",
            "content": "m.content",
            "context": "m.context",
            "metadata": "m.metadata",
            "importance": "m.importance",
            "embedded": "m.embedding IS NOT NULL",
            "observed_at": "m.observed_at",
            "created_at": "m.created_at",
            "updated_at": "m.updated_at",
            "last_accessed_at": "m.last_accessed_at",
            "access_count": "m.access_count",
            "expires_at": "m.expires_at",
            "version": "m.version",
            "kind": "m.kind",
        }
    ),
    Memory,
)
EVENT = _exactly(
    Columns(
        {
            "id": "id",
            "memory_id": "memory_id::text",
            "op": "op",
            "old_content": "old_content",
            "new_content": "new_content",
            "old_context": "old_context",
            "new_context": "new_context",
            "version": "version",
            "actor": "actor",
            "request_id": "request_id",
            "superseded_at": "superseded_at",
            "merged_into": "merged_into::text",
            "created_at": "created_at",
        }
    ),
    MemoryEvent,
)
read_memory = _MemoryReader(MEMORY)


def read_event(row: Sequence[Any]) -> MemoryEvent:
    return MemoryEvent(**EVENT.read(row))
