"""Recall over conversation turns: how turns become memories, how a question becomes
queries, and how the store's vector and lexical rankings are fused and reranked.

The store's own hybrid search is a plain reciprocal-rank fusion of one query against the
memory text. Raw chat turns are a poor fit for it: a turn rarely names its speaker or its
date ("I adopted a puppy last weekend!"), the answer to a question is often the reply to
the turn that matches it, and a question's own words ("When did ...", "什么时候") match
nothing useful. This module handles those three things:

* **Indexing** (``turn_memories``): content is ``"Speaker: text"``; the turn id, session,
  position, speaker and the absolute dates of relative expressions ("yesterday" said on
  21 April 2023 -> Thursday 20 April 2023) are metadata, the session date is ``observed_at``.
  Date and neighbouring turns can go into the context, but that measured worse (see
  ``IndexConfig``).
* **Queries** (``lexical_query``, ``strip_names``): the participants' names are taken out of
  the question (they match greetings, "Hi Anna!", not facts), for the vector side too, and
  question words (English and Chinese) out of the lexical side.
* **Reranking** (``rerank``): weighted reciprocal-rank fusion of the per-mode rankings from
  the store, plus, when the question names one participant, a vector ranking over that
  person's turns only (it reaches past greetings and other people's talk on the topic); a
  bonus for turns said by the person named; the answer-follows-question rule (a turn that
  is a question matches a question well but rarely answers it: it is demoted, and the other
  speaker's next turn inherits part of its score); optional bonuses for turns next to
  strong hits and, on "when" questions, for turns with a time expression.

It reads through ``MemoryStore.search`` only, so it works on any memories: those without
turn metadata simply get no speaker or neighbour bonus.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from services import lexical
from services.memories import DEFAULT_NAMESPACE, MemoryStore, NewMemory, SearchHit

# ---- indexing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation, as the agent or a benchmark file has it."""

    speaker: str
    text: str
    turn_id: str = ""
    session: str = ""
    position: int = 0  # index within its session
    when: datetime | None = None  # when the session took place


@dataclass(frozen=True)
class IndexConfig:
    """What goes into a turn's memory. The defaults are the measured best (see
    docs/BENCHMARKS.md): the speaker in the content; date and neighbours kept out of the
    embedded and indexed text, because with a small embedding model a shared date line or
    a neighbour's words pull every turn of a session towards each other (recall@10 fell
    from 0.87 to 0.79 with the date, to 0.56 with the next turn, vector side). The session
    date is ``observed_at`` and resolved relative dates are metadata, for the answer step.
    """

    speaker_in_content: bool = True
    session_date_in_context: bool = False
    resolved_dates_in_context: bool = False
    neighbours_before: int = 0
    neighbours_after: int = 0
    neighbour_chars: int = 200


_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ZH_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_NUMBER_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "few": 3, "couple of": 2}

# (pattern, function of (session date, match) -> (start, end) of the period meant)
_Span = tuple[datetime, datetime]


def _day(d: datetime) -> _Span:
    return d, d


def _week_before(d: datetime) -> _Span:
    return d - timedelta(days=7 + d.weekday()), d - timedelta(days=1 + d.weekday())


def _weekend_before(d: datetime) -> _Span:
    saturday = d - timedelta(days=(d.weekday() - 5) % 7 or 7)
    if d.weekday() == 6:  # said on a Sunday: "last weekend" is the one before
        saturday -= timedelta(days=7)
    return saturday, saturday + timedelta(days=1)


def _weekday_before(d: datetime, weekday: int) -> _Span:
    back = (d.weekday() - weekday) % 7 or 7
    return _day(d - timedelta(days=back))


def _weekday_after(d: datetime, weekday: int) -> _Span:
    ahead = (weekday - d.weekday()) % 7 or 7
    return _day(d + timedelta(days=ahead))


def _month_shift(d: datetime, months: int) -> _Span:
    month = d.month - 1 + months
    first = d.replace(year=d.year + month // 12, month=month % 12 + 1, day=1)
    return first, first


_EN_RULES: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"\byesterday\b"), lambda d, m: _day(d - timedelta(days=1))),
    (re.compile(r"\btoday\b|\bthis morning\b|\btonight\b"), lambda d, m: _day(d)),
    (re.compile(r"\btomorrow\b"), lambda d, m: _day(d + timedelta(days=1))),
    (re.compile(r"\blast weekend\b"), lambda d, m: _weekend_before(d)),
    (re.compile(r"\blast week\b"), lambda d, m: _week_before(d)),
    (
        re.compile(r"\bnext week\b"),
        lambda d, m: _week_before(d + timedelta(days=14)),
    ),
    (re.compile(r"\blast month\b"), lambda d, m: _month_shift(d, -1)),
    (re.compile(r"\bnext month\b"), lambda d, m: _month_shift(d, 1)),
    (re.compile(r"\blast year\b"), lambda d, m: _day(d.replace(year=d.year - 1, month=1, day=1))),
    (
        re.compile(r"\b(a|one|two|three|four|few|couple of) (day|week|month)s? ago\b"),
        lambda d, m: _day(
            d
            - timedelta(
                days=_NUMBER_WORDS[m.group(1)] * {"day": 1, "week": 7, "month": 30}[m.group(2)]
            )
        ),
    ),
    (
        re.compile(r"\b(?:last|on) (" + "|".join(_WEEKDAYS) + r")\b"),
        lambda d, m: _weekday_before(d, _WEEKDAYS.index(m.group(1))),
    ),
    (
        re.compile(r"\b(?:next|this) (" + "|".join(_WEEKDAYS) + r")\b"),
        lambda d, m: _weekday_after(d, _WEEKDAYS.index(m.group(1))),
    ),
]
_ZH_RULES: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"前天"), lambda d, m: _day(d - timedelta(days=2))),
    (re.compile(r"昨天|昨晚"), lambda d, m: _day(d - timedelta(days=1))),
    (re.compile(r"今天|今晚"), lambda d, m: _day(d)),
    (re.compile(r"明天"), lambda d, m: _day(d + timedelta(days=1))),
    (re.compile(r"上周末|上个周末"), lambda d, m: _weekend_before(d)),
    (re.compile(r"上周(?![一二三四五六日天末])|上个星期|上星期"), lambda d, m: _week_before(d)),
    (
        re.compile(r"上(?:周|星期)([一二三四五六日天])"),
        lambda d, m: _weekday_before(d, _ZH_WEEKDAYS[m.group(1)]),
    ),
    (re.compile(r"下周|下个星期"), lambda d, m: _week_before(d + timedelta(days=14))),
    (re.compile(r"上个月|上月"), lambda d, m: _month_shift(d, -1)),
    (re.compile(r"下个月|下月"), lambda d, m: _month_shift(d, 1)),
    (re.compile(r"去年"), lambda d, m: _day(d.replace(year=d.year - 1, month=1, day=1))),
]
_TIME_WORDS = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|last|next|ago|weekend|monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday|january|february|march|april|may|june|july|august|"
    r"september|october|november|december|\d{4})\b|"
    r"昨天|今天|明天|前天|上周|下周|上个月|下个月|去年|周末|星期|[0-9一二三四五六七八九十]+月|\d+号",
    re.IGNORECASE,
)


def date_text(when: datetime) -> str:
    """'Friday 3 March 2023' (English month names: the lexical index stems English)."""
    return f"{when.strftime('%A')} {when.day} {when.strftime('%B %Y')}"


def _span_text(span: _Span, monthly: bool) -> str:
    start, end = span
    if monthly:
        return start.strftime("%B %Y")
    if start == end:
        return date_text(start)
    return f"{date_text(start)} to {date_text(end)}"


def resolve_relative_dates(text: str, when: datetime) -> list[str]:
    """Absolute dates for the relative time expressions in ``text`` said on ``when``."""
    lowered = text.lower()
    found: list[str] = []
    for rules in (_EN_RULES, _ZH_RULES):
        for pattern, rule in rules:
            for match in pattern.finditer(lowered):
                span = rule(when, match)  # type: ignore[operator]
                monthly = "month" in match.group(0) or "月" in match.group(0)
                phrase = f"{match.group(0)} = {_span_text(span, monthly)}"
                if phrase not in found:
                    found.append(phrase)
    return found


def has_time_expression(text: str) -> bool:
    return bool(_TIME_WORDS.search(text))


def turn_memories(turns: Sequence[Turn], config: IndexConfig = IndexConfig()) -> list[NewMemory]:
    """One memory per turn: ``Speaker: text``; metadata keeps the turn's id, session,
    position, speaker and resolved relative dates (``time``); ``observed_at`` is the
    session date. ``config`` can add the date and neighbouring turns to the context."""
    by_session: dict[str, list[Turn]] = {}
    for turn in turns:
        by_session.setdefault(turn.session, []).append(turn)
    for session_turns in by_session.values():
        session_turns.sort(key=lambda t: t.position)
    out: list[NewMemory] = []
    for turn in turns:
        session_turns = by_session[turn.session]
        index = next(i for i, t in enumerate(session_turns) if t is turn)
        resolved = resolve_relative_dates(turn.text, turn.when) if turn.when else []
        lines: list[str] = []
        if turn.when is not None and config.session_date_in_context:
            lines.append(f"Said on {date_text(turn.when)}.")
        if resolved and config.resolved_dates_in_context:
            lines.append("Time: " + "; ".join(resolved) + ".")
        before = session_turns[max(0, index - config.neighbours_before) : index]
        after = session_turns[index + 1 : index + 1 + config.neighbours_after]
        for label, group in (("Before", before), ("After", after)):
            for other in group:
                lines.append(f"{label}: {other.speaker}: {_clip(other.text, config)}")
        metadata: dict[str, object] = {
            "speaker": turn.speaker,
            "session": turn.session,
            "position": turn.position,
            "time_expression": has_time_expression(turn.text),
        }
        if resolved:
            metadata["time"] = resolved
        if turn.turn_id:
            metadata["turn_id"] = turn.turn_id
        out.append(
            NewMemory(
                content=f"{turn.speaker}: {turn.text}" if config.speaker_in_content else turn.text,
                context="\n".join(lines),
                metadata=metadata,
                observed_at=turn.when,
            )
        )
    return out


def _clip(text: str, config: IndexConfig) -> str:
    if len(text) <= config.neighbour_chars:
        return text
    return text[: config.neighbour_chars].rsplit(" ", 1)[0] + " …"


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


def _is_question(text: str) -> bool:
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
class RecallConfig:
    """The defaults are the measured best on the synthetic set (docs/BENCHMARKS.md)."""

    candidates: int = 50  # per mode, from the store
    rrf_k: int = 60
    vector_weight: float = 1.0
    lexical_weight: float = 1.0
    rewrite_query: bool = True
    strip_names: bool = True  # participants' names match greetings, not facts
    speaker_bonus: float = 0.3  # score share added to turns said by a person the query names
    speaker_scope_weight: float = 1.0  # a third ranking: vectors over that person's turns only
    reply_weight: float = 0.3  # share of a matching question's score its answer inherits
    question_factor: float = 0.6  # score multiplier for turns that are themselves questions
    neighbour_weight: float = 0.0  # share of either neighbour's score a turn inherits
    temporal_bonus: float = 0.0  # added (as a share of the top score) on "when" questions


def search(
    store: MemoryStore,
    user_id: str,
    query: str,
    *,
    limit: int = 10,
    namespace: str = DEFAULT_NAMESPACE,
    config: RecallConfig = RecallConfig(),
    query_vector: np.ndarray | None = None,
    speakers: Sequence[str] | None = None,
) -> list[SearchHit]:
    """The user's memories most relevant to ``query``, best first, reranked (see module).

    ``speakers`` are the names of the conversation's participants; by default they are read
    from the candidates' ``speaker`` metadata.
    """

    def vector_search(text: str, vector: np.ndarray | None) -> list[SearchHit]:
        return store.search(
            user_id,
            text,
            namespace=namespace,
            limit=config.candidates,
            mode="vector",
            query_vector=vector,
        )

    vector_hits = vector_search(query, query_vector)
    if speakers is None:
        speakers = sorted(
            {
                str(h.memory.metadata["speaker"])
                for h in vector_hits
                if h.memory.metadata.get("speaker")
            }
        )
    named = named_speakers(query, speakers)
    stripped_query = query
    if config.strip_names and named:
        stripped = strip_names(query, named)
        if stripped.strip() and stripped != query:
            stripped_query = stripped
            vector_hits = vector_search(stripped, None)
    text = (
        lexical_query(query, named if config.strip_names else ()) if config.rewrite_query else query
    )
    if not text.strip():
        text = query
    lexical_hits = (
        store.search(user_id, text, namespace=namespace, limit=config.candidates, mode="lexical")
        if lexical.query(text)
        else []
    )
    scoped_hits: list[SearchHit] = []
    if config.speaker_scope_weight and len(named) == 1:
        # Among one person's turns the ranking reaches past greetings and other people's
        # talk about the same topic, which matters most for questions about that person.
        scoped_hits = store.search(
            user_id,
            stripped_query,
            namespace=namespace,
            limit=config.candidates,
            mode="vector",
            metadata_filter={"speaker": named[0]},
        )
    return rerank(
        query,
        vector_hits,
        lexical_hits,
        limit=limit,
        config=config,
        named=named,
        scoped_hits=scoped_hits,
    )


def rerank(
    query: str,
    vector_hits: Sequence[SearchHit],
    lexical_hits: Sequence[SearchHit],
    *,
    limit: int,
    config: RecallConfig = RecallConfig(),
    named: Sequence[str] = (),
    scoped_hits: Sequence[SearchHit] = (),
) -> list[SearchHit]:
    """Fuse the per-mode rankings and apply the speaker, reply, neighbour and temporal
    bonuses."""
    hits: dict[str, SearchHit] = {}
    vector_rank: dict[str, int] = {}
    lexical_rank: dict[str, int] = {}
    for rank, hit in enumerate(vector_hits, start=1):
        hits[hit.memory.id] = hit
        vector_rank[hit.memory.id] = rank
    for rank, hit in enumerate(lexical_hits, start=1):
        hits.setdefault(hit.memory.id, hit)
        lexical_rank[hit.memory.id] = rank
    scoped_rank: dict[str, int] = {}
    for rank, hit in enumerate(scoped_hits, start=1):
        hits.setdefault(hit.memory.id, hit)
        scoped_rank[hit.memory.id] = rank
    base: dict[str, float] = {}
    for memory_id in hits:
        score = 0.0
        if memory_id in vector_rank:
            score += config.vector_weight / (config.rrf_k + vector_rank[memory_id])
        if memory_id in lexical_rank:
            score += config.lexical_weight / (config.rrf_k + lexical_rank[memory_id])
        if memory_id in scoped_rank:
            score += config.speaker_scope_weight / (config.rrf_k + scoped_rank[memory_id])
        base[memory_id] = score
    if config.speaker_bonus and named:
        for memory_id, hit in hits.items():
            if hit.memory.metadata.get("speaker") in named:
                base[memory_id] *= 1 + config.speaker_bonus
    final = dict(base)
    slots: dict[tuple[object, object], str] = {}
    for memory_id, hit in hits.items():
        meta = hit.memory.metadata
        if "session" in meta and "position" in meta:
            slots[(meta["session"], meta["position"])] = memory_id
    if config.reply_weight:
        # A question in the conversation that matches the user's question is rarely the
        # answer; the other person's next turn usually is.
        for memory_id, hit in hits.items():
            meta = hit.memory.metadata
            if "session" not in meta or "position" not in meta:
                continue
            asked = slots.get((meta["session"], meta["position"] - 1))
            if asked is None or hits[asked].memory.metadata.get("speaker") == meta.get("speaker"):
                continue
            if _is_question(hits[asked].memory.content):
                final[memory_id] += config.reply_weight * base[asked]
    if config.question_factor != 1.0:
        for memory_id, hit in hits.items():
            if _is_question(hit.memory.content):
                final[memory_id] -= (1 - config.question_factor) * base[memory_id]
    if config.neighbour_weight:
        for memory_id, hit in hits.items():
            meta = hit.memory.metadata
            if "session" not in meta or "position" not in meta:
                continue
            around = [
                base[slots[key]]
                for key in (
                    (meta["session"], meta["position"] - 1),
                    (meta["session"], meta["position"] + 1),
                )
                if key in slots
            ]
            if around:
                final[memory_id] += config.neighbour_weight * max(around)
    if config.temporal_bonus and is_temporal(query) and final:
        top = max(final.values())
        for memory_id, hit in hits.items():
            if hit.memory.metadata.get("time_expression"):
                final[memory_id] += config.temporal_bonus * top
    ordered = sorted(
        hits,
        key=lambda i: (
            -final[i],
            -hits[i].memory.importance,
            -hits[i].memory.updated_at.timestamp(),
        ),
    )
    return [
        replace(
            hits[i],
            score=final[i],
            vector_rank=vector_rank.get(i),
            lexical_rank=lexical_rank.get(i),
        )
        for i in ordered[:limit]
    ]
