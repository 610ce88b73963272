"""Lexical search terms that work for English and for Chinese/Japanese text alike.

PostgreSQL's parsers split on spaces, so a run of Chinese characters becomes one "word"
and "火锅" would never match "用户喜欢四川火锅". Text is therefore indexed as its words
plus overlapping character bigrams of every CJK run; the same function turns a query into
terms, so both sides agree. The 'english' configuration stems the Latin words.
"""

from __future__ import annotations

import re

TEXT_SEARCH_CONFIG = "english"

# CJK ideographs, kana and compatibility ideographs: scripts written without spaces.
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_TERMS = 64


def terms(text: str) -> list[str]:
    """Words and CJK bigrams of ``text``, lower-cased, in order of appearance."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        position = 0
        for match in _CJK_RUN.finditer(word):
            if match.start() > position:
                out.append(word[position : match.start()])
            out.extend(_bigrams(match.group()))
            position = match.end()
        if position < len(word):
            out.append(word[position:])
    return out


def document(*parts: str) -> str:
    """The text handed to to_tsvector for a memory."""
    return " ".join(term for part in parts for term in terms(part))


def query(text: str) -> str | None:
    """A to_tsquery expression matching any term of ``text`` (ranking sorts out the rest).

    Terms contain only letters and digits, so nothing in user text can inject tsquery
    syntax; None when the text has no searchable terms.
    """
    unique = list(dict.fromkeys(terms(text)))[:MAX_QUERY_TERMS]
    return " | ".join(unique) if unique else None


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]
