"""Conversation turns as memories: how a turn of a chat or an imported conversation is
stored so that retrieval can use who said it, when, and what it answered.

A turn's content is ``"Speaker: text"`` (or the text, for the agent's own episodes, whose
speaker is metadata); metadata keeps the speaker, the session (a thread id or an imported
session number) and the position within it, which the retrieval pipeline's speaker and
answer-follows-question rules read. Relative dates ("yesterday" said on 21 April 2023 ->
Thursday 20 April 2023) are resolved into metadata ``time``; the session date is
``observed_at``. Date and neighbouring turns can go into the context, but that measured
worse (see ``IndexConfig``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.memories.records import NewMemory

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
