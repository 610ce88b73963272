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
from services.memories import sql

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


def merge_duplicates(
    tx: Tx, memory_ids: Sequence[str], rule: MergeRule, max_metadata_bytes: int
) -> int:
    """Fold each newly embedded fact into an older one that says the same thing.

    Runs inside the embedding worker's transaction, right after the vectors are written;
    returns how many were merged.
    """
    merged = 0
    for row in tx.execute(sql.PENDING, [list(memory_ids)]):
        new = sql.PENDING_ROW.read(row)
        new["metadata"] = _json(new["metadata"])
        tx.execute(sql.CLEAR_PENDING, [new["id"]])
        neighbours = tx.execute(
            sql.NEIGHBOURS,
            [new["user_id"], new["namespace"], new["id"], new["id"], rule.similarity,
             MAX_NEIGHBOURS],
        )  # fmt: skip
        target = next(
            (
                found
                for found in map(sql.NEIGHBOUR_ROW.read, neighbours)
                if same_speaker(new["metadata"], _json(found["metadata"]))
                and same_statement(
                    found["content"], new["content"], float(found["similarity"]), rule
                )
            ),
            None,
        )
        if target is not None and _fold(tx, new, target, max_metadata_bytes):
            merged += 1
    return merged


def _fold(tx: Tx, new: dict[str, Any], target: dict[str, Any], max_metadata_bytes: int) -> bool:
    """Fold the ``new`` row into ``target`` (rows read by name); False when the survivor's
    metadata would outgrow its limit, so both stay."""
    metadata = new["metadata"]
    entry = {
        "id": new["id"],
        "content": new["content"],
        "context": new["context"],
        "metadata": {k: v for k, v in metadata.items() if k != MERGED_KEY},
        "observed_at": new["observed_at"].isoformat(),
        "created_at": new["created_at"].isoformat(),
    }
    survivor_meta = _json(target["metadata"])
    folded = [*survivor_meta.get(MERGED_KEY, []), entry, *metadata.get(MERGED_KEY, [])]
    combined = json.dumps({**survivor_meta, MERGED_KEY: folded})
    if len(combined) > max_metadata_bytes:
        return False  # keeping both loses nothing; a truncated merge would
    expires_at = new["expires_at"]
    survivor = sql.FOLDED_ROW.read(
        tx.one(sql.FOLD, [combined, float(new["importance"]), expires_at, expires_at, target["id"]])
    )
    tx.execute(
        sql.MERGE_EVENT,
        [survivor["id"], survivor["user_id"], survivor["namespace"], survivor["key"], "UPDATE",
         survivor["content"], survivor["content"], survivor["context"], survivor["context"],
         survivor["version"], None],
    )  # fmt: skip
    gone_key, gone_version = tx.one(sql.DELETE_MERGED, [new["id"]])
    tx.execute(
        sql.MERGE_EVENT,
        [new["id"], new["user_id"], new["namespace"], gone_key, "MERGED", new["content"],
         survivor["content"], new["context"], survivor["context"], gone_version, target["id"]],
    )  # fmt: skip
    return True


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})
