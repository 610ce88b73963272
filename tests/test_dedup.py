"""Near-duplicate merging loses nothing: the rule on the labelled pairs with the real model,
and a property test through the real write path and embedding outbox (embedded PostgreSQL +
pgvector, the local embedder) over random near-duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.quality import dedup as calibration
from services.embedding_worker import drain
from services.embeddings import DUPLICATE_THRESHOLDS
from services.memories.dedup import MergeRule, normalise, same_statement, wording
from tests.processes import unique_user

PAIRS = Path(calibration.__file__).with_name("dedup_pairs.jsonl")


def test_one_different_word_is_a_different_statement():
    rule = MergeRule(similarity=0.0)  # the model agrees with anything: the words decide
    assert same_statement("I have two cats.", "i have two cats", 0.99, rule)
    assert same_statement("I'm proud of you!", "I am proud of you", 0.99, rule)
    assert same_statement("我每周六打网球。", "我每周六打网球啊", 0.99, rule)
    assert not same_statement("I have two cats.", "I have three cats.", 0.99, rule)
    assert not same_statement("I prefer tea over coffee.", "I prefer coffee over tea.", 1, rule)
    assert not same_statement("I like jazz.", "I don't like jazz.", 0.99, rule)
    assert not same_statement("Anna: Thanks!", "Ben: Thanks!", 0.99, rule)
    assert not same_statement("小林：太好了！", "小美：太好了！", 0.99, rule)
    assert not same_statement("我每周六打网球。", "我每周日打网球。", 0.99, rule)
    # the model's threshold still guards texts that only share their content words
    assert not same_statement("I'm proud of you!", "I am proud of you", 0.5, MergeRule(0.95))


def test_the_rule_merges_no_distinct_pair_of_the_labelled_set(embedder):
    pairs = calibration.load_pairs(PAIRS, embedder)
    assert len(pairs) >= 200 and {p.lang for p in pairs} == {"en", "zh"}
    rule = MergeRule(similarity=DUPLICATE_THRESHOLDS[embedder.model])
    result = calibration.score(pairs, rule)
    assert result["wrong_merges"] == 0, result
    assert result["merged"] > 0  # and it does merge the trivially different ones
    # Similarity alone would not do: it merges distinct pairs at the same threshold.
    naive = [p for p in pairs if not p.same and p.similarity >= rule.similarity]
    assert naive


STATEMENTS = [
    "I have two cats",
    "I have three cats",
    "My flight to Lisbon is on Friday",
    "My flight to Lisbon is on Sunday",
    "I like jazz",
    "I don't like jazz",
    "我每周六早上打网球",
    "我每周日早上打网球",
]
SPEAKERS = [None, "Anna", "Ben"]


def _variant(text: str, style: int) -> str:
    """The same statement written differently: case, punctuation, spacing, a filler."""
    return [text, text.lower() + "!", f"  {text}.  ", text.upper(), f"{text}, really"][style]


writes = st.lists(
    st.tuples(
        st.integers(0, len(STATEMENTS) - 1),
        st.integers(0, 4),
        st.sampled_from(SPEAKERS),
        st.booleans(),  # the speaker in metadata, or written as "Name: text"
    ),
    min_size=2,
    max_size=12,
)


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(writes=writes)
def test_a_merge_never_loses_an_acknowledged_write(store, pool, embedder, writes):
    user = unique_user("dedup")
    acknowledged = []
    for statement, style, speaker, in_metadata in writes:
        text = _variant(STATEMENTS[statement], style)
        metadata = {"speaker": speaker} if speaker and in_metadata else {}
        content = f"{speaker}: {text}" if speaker and not in_metadata else text
        written = store.upsert(user, content, metadata=metadata)
        assert written.op == "ADD"
        acknowledged.append((written.memory.id, written.memory.content, metadata))
    drain(pool, embedder, batch_size=64, duplicate_threshold=DUPLICATE_THRESHOLDS[embedder.model])

    live = {m.id: m for m in store.list(user, limit=200).items}
    for memory_id, content, metadata in acknowledged:
        holder = store.get(user, memory_id)  # a merged id resolves to its survivor
        if holder.id == memory_id:
            assert holder.content == content and holder.metadata.get("speaker") == metadata.get(
                "speaker"
            )
            continue
        assert holder.id in live
        folded = {e["id"]: e for e in holder.metadata["merged"]}
        entry = folded[memory_id]
        assert entry["content"] == content and entry["metadata"] == metadata
        # and it was the same statement by the same speaker
        assert holder.metadata.get("speaker") == metadata.get("speaker")
        assert wording(holder.content) == wording(content) or normalise(
            holder.content
        ) == normalise(content)
    # every distinct (speaker, statement) written is still a live memory of its own
    said = {(m.get("speaker"), normalise(" ".join(wording(c)))) for _, c, m in acknowledged}
    kept = {
        (m.metadata.get("speaker"), normalise(" ".join(wording(m.content)))) for m in live.values()
    }
    assert said == kept


@pytest.mark.parametrize("kind", ["episode"])
def test_episodes_never_merge(store, pool, embedder, kind):
    from services.memories.records import NewMemory

    user = unique_user("episodes")
    store.add_many(user, [NewMemory("Thanks!", kind=kind), NewMemory("Thanks!", kind=kind)])
    store.upsert(user, "thanks", kind=kind)
    drain(pool, embedder, batch_size=64, duplicate_threshold=0.0)
    assert store.count(user, kind=kind) == 3
