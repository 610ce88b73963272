"""Near-duplicate merging that never loses an acknowledged write.

Owns the rule for "these two memories are the same statement" and the merge itself. Small
embedding models put different sentences on one topic very close together (two people
reacting to the same photo score 0.95 with multilingual-e5-small), so similarity alone is
never enough. Two facts merge only when all of these hold:

* same user, namespace and kind ``fact`` (episodes are events: saying "thanks" twice is two
  turns), and the same speaker where either names one (``metadata.speaker``);
* the same speaker prefix where the text is written as a turn ("Anna: ...");
* the normalised texts are equal (case, width, punctuation, spacing), or the same content
  words in the same order (articles and fillers aside) with a cosine similarity of at
  least the model's threshold (``MergeRule``): one different word, a day, a name, "two"
  or "three", a "not", is a different statement.

A merge keeps the older memory's id, text and vector, and adds the newer one to its
``metadata.merged`` (id, text, context, metadata, observed_at), so nothing either said is
lost; the newer row is deleted with a ``MERGED`` event carrying both texts and
``merged_into``, so its id still resolves. A merge that would push the survivor's metadata
over its size limit is not made: both memories stay.

Calibrated on bench/quality/dedup_pairs.jsonl (256 English and Chinese pairs labelled
same/distinct, most distinct ones differing in one word): ``python -m bench.quality.dedup``
prints the rule's precision (1.0: no distinct pair merges) and recall (0.2: paraphrases
with other words stay two memories, a duplicate rather than a loss); similarity alone at
0.95 merged 98 of its 154 distinct pairs. Figures in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.db import Tx

MERGED_KEY = "merged"  # metadata key holding what was folded into a memory
MAX_NEIGHBOURS = 5  # near neighbours checked against the rule per new memory


@dataclass(frozen=True)
class MergeRule:
    similarity: float  # cosine at or above which two texts may be the same statement


# Words whose presence changes no fact: articles, copulas and fillers. Pronouns, negations,
# prepositions and numbers are kept: "my sister" is not "his sister".
_FILLER_WORDS = frozenset(
    {
        "a", "an", "the", "is", "am", "are", "was", "were", "be", "been", "m", "re", "s",
        "ve", "ll", "d", "very", "really", "so", "just", "also", "too", "quite", "oh", "um",
        "uh", "well", "actually", "and",
    }
)  # fmt: skip
_FILLER_CHARS = frozenset("的了呢吧啊呀嘛哦哈嗯啦")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+")
# "Anna: ..." or "小林：...": a short name before a colon, as conversation turns are written.
_SPEAKER = re.compile(r"^\s*([^\s:：][^:：\n]{0,39}?)\s*[:：]\s*(?=\S)")


def normalise(text: str) -> str:
    """Case, width, punctuation and spacing removed: what is left is the wording."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if unicodedata.category(c)[0] not in "PZSC")


def speaker_prefix(text: str) -> str | None:
    match = _SPEAKER.match(text)
    return match.group(1).casefold() if match else None


def wording(text: str) -> tuple[str, ...]:
    """The content words of ``text`` in order (CJK by character), fillers left out."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words: list[str] = []
    for word in _WORD.findall(folded):
        if _CJK.search(word):
            words.extend(c for c in word if c not in _FILLER_CHARS)
        elif word not in _FILLER_WORDS:
            words.append(word)
    return tuple(words)


def same_statement(a: str, b: str, similarity: float, rule: MergeRule) -> bool:
    """Whether a person would call ``a`` and ``b`` the same statement: the same speaker
    (when the text names one), and the same content words in the same order (case,
    punctuation, articles and fillers aside), with the model agreeing. One different word
    (a day, a name, "two" or "three") is a different statement."""
    if speaker_prefix(a) != speaker_prefix(b):
        return False
    if normalise(a) == normalise(b):
        return True
    return similarity >= rule.similarity and wording(a) == wording(b)


def same_speaker(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("speaker") == b.get("speaker")


_PENDING_SQL = """
    SELECT m.id::text, m.user_id, m.namespace, m.content, m.context, m.metadata,
        m.observed_at, m.created_at, m.expires_at, m.importance
    FROM memories m WHERE m.id = ANY(%s::uuid[])
      AND m.dedup_pending AND m.embedding IS NOT NULL
    ORDER BY m.created_at, m.id
"""
# The nearest older live facts of the same user and namespace. The user's rows are
# materialised first (the per-user btree), as in search, so this never becomes a global
# vector scan.
_NEIGHBOURS_SQL = """
    WITH mine AS MATERIALIZED (
        SELECT m.id, m.embedding, m.created_at, m.content, m.metadata FROM memories m
        WHERE m.user_id = %s AND m.namespace = %s AND m.id <> %s AND m.kind = 'fact'
          AND m.embedding IS NOT NULL AND (m.expires_at IS NULL OR m.expires_at > now())
    )
    SELECT mine.id::text, 1 - (mine.embedding <=> self.embedding), mine.content,
        mine.metadata
    FROM mine, memories self
    WHERE self.id = %s AND (mine.created_at, mine.id) < (self.created_at, self.id)
      AND 1 - (mine.embedding <=> self.embedding) >= %s
    ORDER BY mine.embedding <=> self.embedding
    LIMIT %s
"""
_FOLD_SQL = """
    UPDATE memories AS m SET metadata = %s::jsonb,
        importance = GREATEST(m.importance, %s),
        expires_at = CASE WHEN m.expires_at IS NULL OR %s::timestamptz IS NULL THEN NULL
                          ELSE GREATEST(m.expires_at, %s::timestamptz) END,
        updated_at = now(), version = m.version + 1
    WHERE m.id = %s
    RETURNING m.id::text, m.user_id, m.namespace, m.key, m.content, m.context, m.version
"""
_EVENT_SQL = """
    INSERT INTO memory_events (memory_id, user_id, namespace, key, op, old_content,
        new_content, old_context, new_context, version, actor, merged_into)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'merge', %s)
"""


def merge_duplicates(
    tx: Tx, memory_ids: Sequence[str], rule: MergeRule, max_metadata_bytes: int
) -> int:
    """Fold each newly embedded fact into an older one that says the same thing.

    Runs inside the embedding worker's transaction, right after the vectors are written;
    returns how many were merged.
    """
    merged = 0
    for row in tx.execute(_PENDING_SQL, [list(memory_ids)]):
        new_id, user_id, namespace, content, context, metadata, observed, created = row[:8]
        expires_at, importance = row[8], float(row[9])
        metadata = _json(metadata)
        tx.execute("UPDATE memories SET dedup_pending = false WHERE id = %s", [new_id])
        neighbours = tx.execute(
            _NEIGHBOURS_SQL,
            [user_id, namespace, new_id, new_id, rule.similarity, MAX_NEIGHBOURS],
        )
        target = next(
            (
                n
                for n in neighbours
                if same_speaker(metadata, _json(n[3]))
                and same_statement(n[2], content, float(n[1]), rule)
            ),
            None,
        )
        if target is None:
            continue
        entry = {
            "id": new_id,
            "content": content,
            "context": context,
            "metadata": {k: v for k, v in metadata.items() if k != MERGED_KEY},
            "observed_at": observed.isoformat(),
            "created_at": created.isoformat(),
        }
        survivor_meta = _json(target[3])
        folded = [*survivor_meta.get(MERGED_KEY, []), entry, *metadata.get(MERGED_KEY, [])]
        combined = json.dumps({**survivor_meta, MERGED_KEY: folded})
        if len(combined) > max_metadata_bytes:
            continue  # keeping both loses nothing; a truncated merge would
        survivor = tx.one(_FOLD_SQL, [combined, importance, expires_at, expires_at, target[0]])
        _, s_user, s_namespace, s_key, s_content, s_context, s_version = survivor
        tx.execute(
            _EVENT_SQL,
            [target[0], s_user, s_namespace, s_key, "UPDATE", s_content, s_content,
             s_context, s_context, s_version, None],
        )  # fmt: skip
        gone = tx.one("DELETE FROM memories WHERE id = %s RETURNING key, version", [new_id])
        tx.execute(
            _EVENT_SQL,
            [new_id, user_id, namespace, gone[0], "MERGED", content, s_content, context,
             s_context, gone[1], target[0]],
        )  # fmt: skip
        merged += 1
    return merged


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})
