"""The retrieval pipeline: the one function that finds a user's memories for a query.

The agent's per-turn context, the ``search_memory`` tool (chat and reflection), ``GET
/v1/memories/search`` and the OpenAI-compatible endpoint all call ``retrieve``, so what is
measured (bench/quality) is what users get. It serves extracted facts and conversation
turns (episodes) alike, in any language the lexical index and the embedding model cover.

A plain fusion of one vector and one full-text ranking is a poor fit for conversation
memory: a turn rarely names its speaker ("I adopted a puppy last weekend!"), the answer
to a question is often the reply to the turn that matches it, and a question's own words
("When did ...", "什么时候") match nothing useful. So, over one fixed candidate pool per
query (``RetrievalConfig.candidates`` per ranking, whatever ``limit`` is, so a larger
limit never reorders the top of a smaller one):

* **names** of the people in the user's memories (``metadata.speaker``) are taken out of
  the query: they match greetings ("Hi Anna!"), not facts. Question words come out of the
  lexical side.
* **rankings**: vector and lexical over the user's memories, plus, when the query names
  one person, a vector ranking over that person's memories only; fused by weighted
  reciprocal rank.
* **speaker bonus**: memories said by the person named rank higher.
* **answer follows question**: a memory that is itself a question matches a question well
  but rarely answers it; it is demoted, and the other speaker's next turn in the same
  session (``metadata.session`` + ``position``) inherits part of its score.
* **the conversation that matches**: what answers a question is usually said where its
  topic was talked about, so the turns of the sessions whose best turns match the query
  best rank higher (a boost in proportion to the sum of the session's top scores).

Scores are 0-1 relevance: 1.0 is a memory ranked first by both rankings (and, for a
query naming a person, by theirs, said by them; for conversation turns, in the session
that matches best); ``min_score`` cuts below it. Ties break
on importance, recency, then id, so results never depend on row order.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services import lexical
from services.embeddings import EmbeddingError
from services.errors import InvalidInput
from services.memories.records import DEFAULT_NAMESPACE, Kind, RankedMemory, SearchHit
from services.memories.store import MemoryStore
from services.memories.validation import check_limit, check_metadata

log = logging.getLogger(__name__)

# A query's meaning is in its first sentences; embedding all 4,000 characters a query may
# have costs the local model seconds (it embeds 512-token windows) and holds its lock.
MAX_EMBEDDED_QUERY_CHARS = 1000
# Speakers that are roles in the agent's own conversations, not names a query would use.
ROLE_SPEAKERS = frozenset({"user", "assistant"})

# ---- queries --------------------------------------------------------------------------------

# Words that say what kind of answer is wanted, not what it is about. PostgreSQL's English
# stop words already drop "what", "did", "the"; these are the ones it keeps.
_EN_QUESTION_WORDS = {
    "name", "named", "called", "kind", "type", "sort", "happen", "happened", "happening",
    "time", "date", "day", "many", "much", "long", "often", "ago", "describe", "tell",
    "would", "could", "likely", "probably", "think", "thinks", "get", "got", "go", "went",
    "do", "doing", "does", "make", "made", "compare", "compared", "change", "changed",
    "role", "roles", "thing", "things", "someone", "something", "s",
}  # fmt: skip
_CJK_TEXT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ZH_QUESTION = re.compile(
    r"什么时候|什么|哪一|哪里|哪儿|哪个|哪些|哪天|哪年|怎么样|怎么|如何|为什么|是不是|"
    r"有没有|多少|多久|几个|几次|是谁|谁|吗|呢|吧|了|的|是|有|过|在|和|一个"
)
_EN_TEMPORAL = re.compile(
    r"^\s*when\b|\bwhat (?:date|day|time|year|month)\b|\bhow long ago\b"
    r"|\bwhich (?:day|year|month)\b",
    re.IGNORECASE,
)
_ZH_TEMPORAL = re.compile(r"什么时候|哪天|哪一天|哪年|几月|几号|多久以前")


_ASKS = re.compile(r"[?？]\s*$|[吗呢]\W*$")


def is_question(text: str) -> bool:
    return bool(_ASKS.search(text.strip()))


def is_temporal(question: str) -> bool:
    return bool(_EN_TEMPORAL.search(question) or _ZH_TEMPORAL.search(question))


def named_speakers(question: str, speakers: Sequence[str]) -> list[str]:
    """The participants ``question`` mentions by name (or first name)."""
    lowered = question.lower()
    named = []
    for speaker in speakers:
        names = {speaker.lower(), speaker.split()[0].lower()} if speaker.strip() else set()
        for name in names:
            if _CJK_TEXT.search(name):
                found = name in lowered
            else:
                found = re.search(rf"\b{re.escape(name)}\b", lowered) is not None
            if found:
                named.append(speaker)
                break
    return named


def strip_names(question: str, names: Sequence[str]) -> str:
    """The question without the given names (and their possessive 's)."""
    for name in sorted(
        {n for full in names for n in (full, full.split()[0])}, key=len, reverse=True
    ):
        if _CJK_TEXT.search(name):
            question = question.replace(name + "的", " ").replace(name, " ")
        else:
            question = re.sub(
                rf"\b{re.escape(name)}(?:'s|’s)?\b", " ", question, flags=re.IGNORECASE
            )
    return re.sub(r"\s+", " ", question).strip()


def lexical_query(question: str, names: Sequence[str] = ()) -> str:
    """The question's topical words (for the full-text side); '' when none are left."""
    stripped = _ZH_QUESTION.sub(" ", strip_names(question, names) if names else question)
    words = [t for t in lexical.terms(stripped) if t not in _EN_QUESTION_WORDS]
    return " ".join(words)


# ---- ranking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalConfig:
    """The defaults are the measured best (docs/BENCHMARKS.md, memory quality)."""

    candidates: int = 50  # per ranking, from the store; independent of the caller's limit
    rrf_k: int = 15  # LoCoMo dev half: 0.706 at 60, 0.738 at 15; synthetic unchanged (0.972)
    vector_weight: float = 1.0
    lexical_weight: float = 1.0
    rewrite_query: bool = True  # question words out of the lexical side
    strip_names: bool = True  # people's names match greetings, not facts
    speaker_bonus: float = 0.3  # score share added to memories said by a person named
    speaker_scope_weight: float = 1.0  # a third ranking: vectors over that person's only
    reply_weight: float = 0.3  # share of a matching question's score its answer inherits
    question_factor: float = 0.6  # score multiplier for memories that are questions
    neighbour_weight: float = 0.0  # share of the better neighbour's score a turn inherits
    # A session's turns gain in proportion to how well its best turns match. LoCoMo: dev
    # 0.738 -> 0.755 (held out 0.756 -> 0.773) at 0.5; 0.8 gains 0.5 more there but costs
    # the synthetic set's multi-hop questions, whose evidence is spread over sessions.
    # Diversity the other way (fewer turns per session) lost 1.7-7 points.
    session_weight: float = 0.5
    session_top: int = 3  # a session's match: the sum of its best this many scores


@dataclass(frozen=True)
class Retrieved:
    """What ``retrieve`` found, and what it cost (for the agent's latency and usage)."""

    hits: list[SearchHit]
    query_embedded: bool  # False: the embedder failed and only words were searched
    embedding_ms: float


def retrieve(
    store: MemoryStore,
    user_id: str,
    query: str,
    *,
    limit: int = 10,
    namespace: str = DEFAULT_NAMESPACE,
    kind: Kind | None = None,
    min_score: float = 0.0,
    metadata_filter: dict[str, Any] | None = None,
    config: RetrievalConfig = RetrievalConfig(),
    timer: Callable[[], float] = time.perf_counter,
) -> Retrieved:
    """The user's memories most relevant to ``query``, best first (see module).

    If the query cannot be embedded (provider down) the lexical ranking alone answers and
    ``query_embedded`` is False.
    """
    limit = check_limit(limit)
    min_score = check_min_score(min_score)
    store.check_query(user_id, namespace, query)
    if metadata_filter is not None:
        check_metadata(metadata_filter, "filter")
    speakers = [
        s for s in store.speakers(user_id, namespace, kind) if s.lower() not in ROLE_SPEAKERS
    ]
    named = named_speakers(query, speakers) if config.strip_names else []
    vector_text = query
    if named:
        stripped = strip_names(query, named)
        if stripped.strip():
            vector_text = stripped
    lexical_text = lexical_query(query, named) if config.rewrite_query else query
    if not lexical.query(lexical_text):
        lexical_text = query
    started = timer()
    vector = None
    try:
        vector = store.embedder.embed_query(vector_text[:MAX_EMBEDDED_QUERY_CHARS])
    except EmbeddingError as exc:
        log.warning("query embedding failed (%s); searching by words only", exc)
    embedding_ms = (timer() - started) * 1000
    scope = {"speaker": named[0]} if config.speaker_scope_weight and len(named) == 1 else None
    candidates = store.rank(
        user_id,
        namespace=namespace,
        kind=kind,
        query_vector=vector,
        lexical_text=lexical_text,
        scope=scope,
        candidates=config.candidates,
        metadata_filter=metadata_filter,
    )
    hits = [h for h in rerank(candidates, config=config, named=named) if h.score >= min_score]
    hits = hits[:limit]
    store.record_access(hit.memory.id for hit in hits)
    return Retrieved(hits, vector is not None, embedding_ms)


def check_min_score(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidInput("min_score must be a number between 0 and 1", "min_score")
    return float(value)


def ideal_score(config: RetrievalConfig, named: Sequence[str], scoped: bool) -> float:
    """The fused score of a memory first in every ranking (and said by the person named):
    the 1.0 of the relevance scale."""
    weight = config.vector_weight + config.lexical_weight
    if scoped:
        weight += config.speaker_scope_weight
    bonus = 1 + config.speaker_bonus if named else 1.0
    return weight / (config.rrf_k + 1) * bonus


def rerank(
    candidates: Sequence[RankedMemory],
    *,
    config: RetrievalConfig = RetrievalConfig(),
    named: Sequence[str] = (),
) -> list[SearchHit]:
    """Every candidate, best first, scored 0-1: the weighted fusion of its ranks, then the
    speaker bonus and the answer-follows-question rule."""
    by_id = {c.memory.id: c for c in candidates}
    base: dict[str, float] = {}
    for memory_id, c in by_id.items():
        score = 0.0
        if c.vector_rank is not None:
            score += config.vector_weight / (config.rrf_k + c.vector_rank)
        if c.lexical_rank is not None:
            score += config.lexical_weight / (config.rrf_k + c.lexical_rank)
        if c.scoped_rank is not None:
            score += config.speaker_scope_weight / (config.rrf_k + c.scoped_rank)
        if config.speaker_bonus and named and c.memory.metadata.get("speaker") in named:
            score *= 1 + config.speaker_bonus
        base[memory_id] = score
    final = dict(base)
    questions = {i for i, c in by_id.items() if is_question(c.memory.content)}
    slot_of = {memory_id: _slot(c) for memory_id, c in by_id.items()}
    slots = {slot: memory_id for memory_id, slot in slot_of.items() if slot}
    if config.reply_weight:
        for memory_id, c in by_id.items():
            slot = slot_of[memory_id]
            if slot is None:
                continue
            asked = slots.get((slot[0], slot[1] - 1))
            if asked is None or _speaker(by_id[asked]) == _speaker(c):
                continue
            if asked in questions:
                final[memory_id] += config.reply_weight * base[asked]
    if config.neighbour_weight:
        for memory_id in by_id:
            slot = slot_of[memory_id]
            if slot is None:
                continue
            around = [
                base[slots[key]]
                for key in ((slot[0], slot[1] - 1), (slot[0], slot[1] + 1))
                if key in slots
            ]
            if around:
                final[memory_id] += config.neighbour_weight * max(around)
    if config.question_factor != 1.0:
        for memory_id in questions:
            final[memory_id] -= (1 - config.question_factor) * base[memory_id]
    scoped = any(c.scoped_rank is not None for c in candidates)
    ideal = ideal_score(config, named, scoped)
    if config.session_weight and by_id:
        final = _boost_matching_sessions(final, slot_of, config)
        ideal *= 1 + config.session_weight
    ordered = sorted(
        by_id,
        key=lambda i: (
            -final[i],
            -by_id[i].memory.importance,
            -by_id[i].memory.updated_at.timestamp(),
            i,
        ),
    )
    return [
        SearchHit(
            memory=by_id[i].memory,
            score=round(min(1.0, final[i] / ideal), 4),
            vector_rank=by_id[i].vector_rank,
            lexical_rank=by_id[i].lexical_rank,
            similarity=by_id[i].similarity,
        )
        for i in ordered
    ]


def _boost_matching_sessions(
    final: dict[str, float],
    slot_of: dict[str, tuple[str, int] | None],
    config: RetrievalConfig,
) -> dict[str, float]:
    """Each memory gains ``session_weight`` x the top score x its session's match relative
    to the best session's. A memory outside a conversation is a session of its own, so
    facts are neither lifted nor sunk beside turns."""
    session_of = {
        memory_id: f"session:{slot[0]}" if slot is not None else f"memory:{memory_id}"
        for memory_id, slot in slot_of.items()
    }
    session_scores: dict[str, list[float]] = {}
    for memory_id, session in session_of.items():
        session_scores.setdefault(session, []).append(final[memory_id])
    match = {
        session: sum(sorted(scores, reverse=True)[: config.session_top])
        for session, scores in session_scores.items()
    }
    best_match, top = max(match.values()), max(final.values())
    if best_match <= 0 or top <= 0:
        return final
    return {
        memory_id: score + config.session_weight * top * match[session_of[memory_id]] / best_match
        for memory_id, score in final.items()
    }


def _speaker(c: RankedMemory) -> object:
    return c.memory.metadata.get("speaker")


def _slot(c: RankedMemory) -> tuple[str, int] | None:
    """(session, position) of a conversation turn; None for memories outside one."""
    meta = c.memory.metadata
    session, position = meta.get("session"), meta.get("position")
    if session is None or isinstance(position, bool) or not isinstance(position, int):
        return None
    return str(session), position
